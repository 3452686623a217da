"""Stage 5, inference: the Paddle Inference predictor and the end-to-end benchmark.

* :mod:`.predictor` -- ``paddle.inference`` configs (CPU oneDNN FP32/INT8, GPU TensorRT) and
  the INT8-kernel evidence read from the optimized program.
* :mod:`.benchmark` -- timing a whole split end to end, prediction, the benchmark result.
"""

from ppminilm._lazy import lazy_exports

__all__ = ["Predictor", "detect_int8_kernels", "predict", "run_benchmark"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Predictor": "predictor",
        "detect_int8_kernels": "benchmark",
        "predict": "benchmark",
        "run_benchmark": "benchmark",
    },
)
