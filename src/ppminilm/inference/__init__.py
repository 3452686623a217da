"""Stage 5, inference: engines, the Paddle predictor and the end-to-end benchmark.

* :mod:`.engines` -- one interface over Paddle Inference, OpenVINO and onnxruntime
  (``open_engine``), their model conversions (NNCF, paddle2onnx, ORT quantizers) and
  ``engine='auto'`` (time them all, keep the fastest).
* :mod:`.predictor` -- ``paddle.inference`` configs (CPU oneDNN FP32/BF16/INT8, GPU TensorRT) and
  the INT8-kernel evidence read from the optimized program.
* :mod:`.benchmark` -- timing a whole split end to end, prediction, the benchmark result.
* :mod:`.cpuinfo` -- CPU model and ISA flags (AVX2/AVX-512/VNNI/BF16/AMX).
"""

from ppminilm._lazy import lazy_exports

__all__ = ["Predictor", "detect_int8_kernels", "open_engine", "predict", "run_benchmark"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Predictor": "predictor",
        "detect_int8_kernels": "benchmark",
        "open_engine": "engines",
        "predict": "benchmark",
        "run_benchmark": "benchmark",
    },
)
