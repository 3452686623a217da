"""Paddle Inference predictor: ``Config`` building (CPU oneDNN/INT8, GPU TensorRT) and feeding.

CPU runs use oneDNN (``enable_mkldnn``) with ``num_threads`` math threads; INT8 (PTQ) models
additionally need ``enable_mkldnn_int8()``: without it the analysis passes keep the fake-quant
ops of a PaddleSlim model and run them in FP32, which is *slower* than the FP32 model.

GPU runs use TensorRT with tuned dynamic shapes: a first pass with
``collect_shape_range_info(file)`` records the min/max/opt shape of every tensor, a second pass
builds the engines from it (``enable_tuned_tensorrt_dynamic_shape(file, True)``) at FP32, FP16 or
INT8 (``use_calib_mode=False``: a PTQ model carries its own scales).

:func:`config_plan` returns the ``Config`` method calls as data and :func:`build_config` applies
them, so the GPU settings can be checked on a CPU-only build (there ``enable_tensorrt_engine``
raises ``RuntimeError``; ``collect_shape_range_info`` and
``enable_tuned_tensorrt_dynamic_shape`` still apply).

What is observable about INT8 on paddle 2.6 (CPU): with ``enable_save_optim_model(True)`` and
``set_optim_cache_dir(d)``, creating the predictor writes the program *after* the analysis
passes to ``d/_optimized.pdmodel``. With ``enable_mkldnn_int8()`` the fake-quant ops
(``fake_quantize_*``/``fake_*dequantize*``, or ``quantize_linear``/``dequantize_linear`` with
``onnx_format=True``) are gone, oneDNN ``quantize``/``dequantize`` ops appear, and
``fc``/``fused_matmul``/``fused_*`` ops carry ``mkldnn_data_type="int8"``. Without it the
fake-quant ops stay (``mul``/``matmul`` next to ``fake_*`` ops) and no op is ``int8``.
:func:`inspect_optimized_program` reads exactly that.

``InferConfig.int8_op_types`` limits INT8 to some op types. Why the attention matmuls were kept
FP32: on paddle 2.6.2, an INT8 ``fused_matmul`` that carries a fused residual add is wrong and
non-deterministic (two runs of one input differ). ``matmul_elementwise_add_mkldnn_fuse_pass``
folds the attention mask add (``q k^T * scale + mask``) into the scores matmul as its
``ResidualData``; ``cpu_quantize_pass`` then quantizes the mask too and the INT8 kernel with that
residual gives garbage, broadcast mask or not (``benchmarks/int8_attention_repro.py`` reproduces
it on one attention block). With that one pass deleted (:data:`INT8_MATMUL_UNSAFE_PASSES`, done
by :func:`config_plan` whenever INT8 matmuls are allowed) the add runs as its own op and the INT8
matmuls are deterministic and as close to FP32 as the FC layers.

CPU BF16 (``precision='bf16'``) is oneDNN bfloat16 (``enable_mkldnn_bfloat16``), which needs a CPU
with AVX-512 BF16 or AMX (``paddle.base.core.supports_bfloat16``); elsewhere it is refused.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ppminilm.compat.paddle import paddle, program_desc
from ppminilm.config import InferConfig
from ppminilm.errors import DeviceUnavailableError
from ppminilm.modeling.export import MODEL_PREFIX, ServingConfig, read_serving_config
from ppminilm.modeling.saved import ModelFormatError

logger = logging.getLogger(__name__)

#: TensorRT workspace (bytes) and the smallest subgraph worth an engine.
TRT_WORKSPACE_BYTES = 1 << 30
TRT_MIN_SUBGRAPH_SIZE = 5
#: GPU memory pool reserved up front (MB) and the device used.
GPU_MEMORY_POOL_MB = 256
GPU_DEVICE_ID = 0
#: File the analysis passes write the optimized program to (paddle 2.6 naming).
OPTIMIZED_PROGRAM = "_optimized.pdmodel"
#: Op types of a PaddleSlim fake-quantized program (both ``onnx_format`` settings).
_LINEAR_QUANT_OPS = ("quantize_linear", "dequantize_linear")
#: oneDNN ops that move data between FP32 and INT8 in an INT8-optimized program.
_ONEDNN_QUANT_OPS = ("quantize", "dequantize", "requantize")
#: Fuse passes whose INT8 result is wrong on paddle 2.6.2 (module docstring); deleted when INT8
#: matmuls are allowed.
INT8_MATMUL_UNSAFE_PASSES = ("matmul_elementwise_add_mkldnn_fuse_pass",)
#: Op types whose INT8 kernels the unsafe passes feed.
INT8_MATMUL_OPS = ("fused_matmul", "matmul", "matmul_v2")
#: Compute ops whose INT8 variant carries the real speed-up.
_INT8_COMPUTE_OPS = (
    "fc",
    "fused_matmul",
    "matmul",
    "matmul_v2",
    "mul",
    "conv2d",
    "fused_fc_elementwise_layernorm",
)


def is_fake_quant_op(op_type: str) -> bool:
    """Whether an op type is a PaddleSlim fake-quant/dequant op (FP32 simulation of INT8)."""
    return op_type.startswith("fake_") or op_type in _LINEAR_QUANT_OPS


def _program_ops(path: Path) -> list[Any]:
    """The ops of a saved ``.pdmodel``, parsed without touching paddle's static-mode state."""
    desc = program_desc(path, ModelFormatError)
    return [op for block in desc.blocks for op in block.ops]


def _attr(op: Any, name: str) -> Any:
    for a in op.attrs:
        if a.name == name:
            return a.s if a.HasField("s") else (a.b if a.HasField("b") else None)
    return None


def program_is_quantized(model_dir: str | Path) -> bool:
    """Whether an exported program holds PaddleSlim fake-quant ops (a PTQ/QAT model)."""
    ops = _program_ops(Path(model_dir) / f"{MODEL_PREFIX}.pdmodel")
    return any(is_fake_quant_op(op.type) for op in ops)


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class ConfigStep:
    """One ``paddle.inference.Config`` method call of a plan."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


def _trt_precision(precision: str) -> Any:
    p = paddle.inference.PrecisionType
    return {"fp32": p.Float32, "fp16": p.Half, "int8": p.Int8}[precision]


def config_plan(
    cfg: InferConfig,
    *,
    quantized: bool = False,
    shape_file: str | None = None,
    collect_shapes: bool = False,
    optim_dir: str | None = None,
) -> list[ConfigStep]:
    """The ``Config`` calls for a device/precision, as data (pure; no paddle state touched).

    Args:
        cfg: Device, precision, threads, oneDNN/TensorRT switches, batch size.
        quantized: Whether the program holds fake-quant ops (a PTQ model).
        shape_file: TensorRT shape-range file (GPU + TensorRT only).
        collect_shapes: First TensorRT pass: record shape ranges into ``shape_file`` instead of
            building engines.
        optim_dir: Save the optimized program here (for :func:`detect_int8_kernels`).

    Returns:
        Method calls in the order they are applied.

    Raises:
        ValueError: On a combination that cannot run (INT8 on CPU without oneDNN or without a
            quantized program, FP16/INT8 on GPU without TensorRT, TensorRT without shape file).
    """
    steps = [
        ConfigStep("switch_ir_optim", (True,)),
        ConfigStep("enable_memory_optim"),
        ConfigStep("disable_glog_info"),
    ]
    if cfg.device == "cpu":
        steps += [
            ConfigStep("disable_gpu"),
            ConfigStep("set_cpu_math_library_num_threads", (cfg.num_threads,)),
        ]
        if cfg.use_mkldnn:
            steps.append(ConfigStep("enable_mkldnn"))
        if cfg.precision == "int8":
            if not cfg.use_mkldnn:
                raise ValueError(
                    "InferConfig.precision='int8' on cpu needs use_mkldnn=True "
                    "(INT8 kernels are oneDNN kernels)"
                )
            if not quantized:
                raise ValueError(
                    "InferConfig.precision='int8' needs a quantized model (no "
                    "fake-quant ops in the program); run the quantize stage first"
                )
            # Without this the fake-quant ops run in FP32: slower than the FP32 model.
            ops = set(cfg.int8_op_types)
            steps.append(ConfigStep("enable_mkldnn_int8", (ops,) if ops else ()))
            if not ops or ops & set(INT8_MATMUL_OPS):
                steps += [ConfigStep("delete_pass", (name,)) for name in INT8_MATMUL_UNSAFE_PASSES]
        elif cfg.precision == "bf16":
            if not cfg.use_mkldnn:
                raise ValueError(
                    "InferConfig.precision='bf16' on cpu needs use_mkldnn=True "
                    "(BF16 kernels are oneDNN kernels)"
                )
            steps.append(ConfigStep("enable_mkldnn_bfloat16"))
    else:
        steps.append(ConfigStep("enable_use_gpu", (GPU_MEMORY_POOL_MB, GPU_DEVICE_ID)))
        if not cfg.use_trt and cfg.precision != "fp32":
            raise ValueError(f"InferConfig.precision={cfg.precision!r} on gpu needs use_trt=True")
        if cfg.use_trt:
            if not shape_file:
                raise ValueError("TensorRT with dynamic shapes needs a shape-range file")
            if collect_shapes:
                steps.append(ConfigStep("collect_shape_range_info", (shape_file,)))
            else:
                steps += [
                    ConfigStep(
                        "enable_tensorrt_engine",
                        kwargs={
                            "workspace_size": TRT_WORKSPACE_BYTES,
                            "max_batch_size": cfg.batch_size,
                            "min_subgraph_size": TRT_MIN_SUBGRAPH_SIZE,
                            "precision_mode": _trt_precision(cfg.precision),
                            "use_static": False,
                            # A PTQ model carries its scales; TensorRT must not calibrate again.
                            "use_calib_mode": False,
                        },
                    ),
                    ConfigStep("enable_tuned_tensorrt_dynamic_shape", (shape_file, True)),
                ]
    if optim_dir:
        steps += [
            ConfigStep("enable_save_optim_model", (True,)),
            ConfigStep("set_optim_cache_dir", (optim_dir,)),
        ]
    return steps


def build_config(
    model_dir: str | Path,
    cfg: InferConfig,
    *,
    shape_file: str | None = None,
    collect_shapes: bool = False,
    optim_dir: str | None = None,
) -> paddle.inference.Config:
    """Build a ``paddle.inference.Config`` for an exported inference dir.

    Args:
        model_dir: Directory with ``inference.pdmodel``/``.pdiparams`` and ``serving.json``.
        cfg: The inference settings.
        shape_file: TensorRT shape-range file (GPU + TensorRT).
        collect_shapes: Build the shape-collection (first) pass instead of the TensorRT one.
        optim_dir: Save the optimized program there.

    Returns:
        The configured ``Config`` (not yet turned into a predictor).

    Raises:
        ModelFormatError: If the directory is not a valid inference model.
        ValueError: On an impossible device/precision combination (see :func:`config_plan`).
        RuntimeError: From paddle when a step needs a feature this build lacks (TensorRT).
    """
    d = Path(model_dir)
    require_paddle_model(read_serving_config(d), d)
    config = paddle.inference.Config(
        str(d / f"{MODEL_PREFIX}.pdmodel"), str(d / f"{MODEL_PREFIX}.pdiparams")
    )
    plan = config_plan(
        cfg,
        quantized=program_is_quantized(d),
        shape_file=shape_file,
        collect_shapes=collect_shapes,
        optim_dir=optim_dir,
    )
    for step in plan:
        getattr(config, step.method)(*step.args, **dict(step.kwargs))
    return config


def cpu_supports_bf16() -> bool:
    """Whether oneDNN has bfloat16 kernels for this CPU (AVX-512 BF16 or AMX)."""
    from paddle.base import core

    return bool(core.supports_bfloat16())


def require_device(cfg: InferConfig) -> None:
    """Fail clearly when the requested device is not compiled into this paddle.

    Raises:
        DeviceUnavailableError: For ``device='gpu'`` on a CPU-only paddle, TensorRT missing, or
            ``bf16`` on a CPU without bfloat16 support.
    """
    if cfg.device != "gpu":
        if cfg.precision == "bf16" and not cpu_supports_bf16():
            raise DeviceUnavailableError(
                "InferConfig.precision='bf16' but this CPU has no AVX-512 BF16/AMX "
                "(paddle.base.core.supports_bfloat16() is False); use fp32 or int8"
            )
        return
    if not paddle.device.is_compiled_with_cuda():
        raise DeviceUnavailableError(
            f"InferConfig.device='gpu' but paddle {paddle.__version__} is a CPU-only build; "
            "run with device='cpu' or in the gpu-infer image (paddlepaddle-gpu + TensorRT)"
        )
    if cfg.use_trt and not paddle.inference.get_trt_compile_version()[0]:
        raise DeviceUnavailableError(
            "InferConfig.use_trt=True but this paddle build has no "
            "TensorRT; set use_trt=False or use the gpu-infer image"
        )


# --------------------------------------------------------------------------- predictor


def require_paddle_model(serving: ServingConfig, model_dir: str | Path) -> None:
    """Raise ``ModelFormatError`` unless the dir holds a Paddle program (``engine`` paddle)."""
    if serving.engine != "paddle":
        raise ModelFormatError(
            f"{model_dir}/serving.json: engine is {serving.engine!r}, not 'paddle'; run this "
            f"model with InferConfig(engine={serving.engine!r})"
        )


def check_max_seq_len(serving: ServingConfig, max_seq_len: int, source: str) -> None:
    """Raise ``ValueError`` if ``max_seq_len`` exceeds what the model was exported for."""
    if max_seq_len > serving.max_seq_len:
        raise ValueError(
            f"max_seq_len={max_seq_len} exceeds {source}/serving.json "
            f"'max_seq_len'={serving.max_seq_len} the model was exported for"
        )
    max_position = serving.arch.get("max_position") if serving.arch else None
    if isinstance(max_position, int) and max_seq_len > max_position:
        raise ModelFormatError(
            f"{source}/serving.json: 'max_seq_len'={max_seq_len} exceeds the "
            f"model's position embeddings (arch.max_position={max_position})"
        )


class Predictor:
    """A Paddle Inference predictor over one exported inference dir.

    Inputs are fed by ``serving.json``'s ``input_names`` (matched to the predictor's inputs by
    name, or by position when the program renamed them); the output is the first output.
    """

    def __init__(
        self,
        model_dir: str | Path,
        cfg: InferConfig,
        *,
        shape_file: str | None = None,
        collect_shapes: bool = False,
        optim_dir: str | None = None,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.cfg = cfg
        self.serving = read_serving_config(self.model_dir)
        require_paddle_model(self.serving, self.model_dir)
        check_max_seq_len(self.serving, cfg.max_seq_len, str(self.model_dir))
        require_device(cfg)
        self.quantized = program_is_quantized(self.model_dir)
        if self.quantized and cfg.device == "cpu" and cfg.precision != "int8":
            logger.warning(
                "%s is quantized but precision=%r: its fake-quant ops will run in "
                "FP32 (slower than FP32); use precision='int8'",
                self.model_dir,
                cfg.precision,
            )
        self.optim_dir = optim_dir
        config = build_config(
            self.model_dir,
            cfg,
            shape_file=shape_file,
            collect_shapes=collect_shapes,
            optim_dir=optim_dir,
        )
        try:
            self._predictor = paddle.inference.create_predictor(config)
        except (RuntimeError, ValueError, OSError) as exc:
            text = str(exc).strip()
            first = text.splitlines()[0] if text else type(exc).__name__
            # Paddle's message says which file it choked on only in words.
            params = "parameters" in text or "load_combine" in text
            which = self.model_dir / f"{MODEL_PREFIX}.{'pdiparams' if params else 'pdmodel'}"
            raise ModelFormatError(
                f"{which}: Paddle Inference cannot load it (damaged, or not written by "
                f"export?): {first}"
            ) from None
        names = list(self._predictor.get_input_names())
        expected = list(self.serving.input_names)
        if len(names) != len(expected):
            raise ModelFormatError(
                f"{self.model_dir}: program has inputs {names} but "
                f"serving.json 'input_names' lists {expected}"
            )
        # Same names: feed by name. Renamed by a pass: the program keeps the export order.
        self._feed = (
            dict(zip(expected, expected))
            if set(names) == set(expected)
            else dict(zip(expected, names))
        )
        self._output = self._predictor.get_output_names()[0]

    @property
    def labels(self) -> list[str]:
        """Label strings in id order."""
        return list(self.serving.labels)

    def logits(self, arrays: Mapping[str, np.ndarray], batch_size: int) -> np.ndarray:
        """Logits for every row of ``arrays``, run ``batch_size`` rows at a time.

        Args:
            arrays: The model's inputs, int64 ``[n, seq]`` (other keys, e.g. ``labels``, are
                ignored).
            batch_size: Rows per predictor run.

        Returns:
            Logits ``[n, num_labels]``.
        """
        n = len(next(iter(arrays.values())))
        inputs = {name: arrays[name] for name in self._feed if name in arrays}
        return np.concatenate(
            [
                self.run({k: v[start : start + batch_size] for k, v in inputs.items()})
                for start in range(0, n, batch_size)
            ]
        )

    def run(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """Logits for one batch.

        Args:
            arrays: ``input_ids`` and ``token_type_ids`` int64 ``[batch, seq]``.

        Returns:
            Logits ``[batch, num_labels]``.

        Raises:
            ValueError: If an input is missing or does not fit the model.
        """
        shape = None
        for name, tensor_name in self._feed.items():
            if name not in arrays:
                raise ValueError(f"missing input {name!r}; the model takes {list(self._feed)}")
            value = np.ascontiguousarray(arrays[name], dtype=np.int64)
            if value.ndim != 2 or (shape is not None and value.shape != shape):
                raise ValueError(
                    f"input {name!r} has shape {list(value.shape)}; expected "
                    "[batch, seq] like the other inputs"
                )
            shape = value.shape
            if value.shape[1] > self.serving.max_seq_len:
                raise ValueError(
                    f"input {name!r} has {value.shape[1]} tokens; the model at "
                    f"{self.model_dir} takes at most max_seq_len="
                    f"{self.serving.max_seq_len}"
                )
            self._predictor.get_input_handle(tensor_name).copy_from_cpu(value)
        self._predictor.run()
        return np.asarray(self._predictor.get_output_handle(self._output).copy_to_cpu())


# --------------------------------------------------------------------------- int8 check


def inspect_optimized_program(path: str | Path, quantized: bool) -> dict[str, Any]:
    """Count INT8 evidence in an optimized program written by ``enable_save_optim_model``.

    Args:
        path: The ``_optimized.pdmodel`` file.
        quantized: Whether the source program was fake-quantized.

    Returns:
        ``{"checked", "quantized_model", "int8_ops", "quant_dequant_ops", "fake_quant_ops",
        "int8_op_types", "runs_int8", "fp32_fallback"}``. ``int8_ops`` counts compute ops with
        ``mkldnn_data_type="int8"``; ``fp32_fallback`` is True for a quantized model whose
        optimized program still simulates quantization in FP32 or has no INT8 compute op.
    """
    ops = _program_ops(Path(path))
    int8_types: collections.Counter[str] = collections.Counter()
    quant_dequant = fake = 0
    for op in ops:
        if is_fake_quant_op(op.type):
            fake += 1
        elif op.type in _ONEDNN_QUANT_OPS:
            quant_dequant += 1
        elif _attr(op, "mkldnn_data_type") == "int8":
            int8_types[op.type] += 1
    int8_compute = sum(n for t, n in int8_types.items() if t in _INT8_COMPUTE_OPS)
    runs_int8 = int8_compute > 0 and quant_dequant > 0 and fake == 0
    return {
        "checked": True,
        "quantized_model": quantized,
        "int8_ops": int8_compute,
        "quant_dequant_ops": quant_dequant,
        "fake_quant_ops": fake,
        "int8_op_types": dict(sorted(int8_types.items())),
        "runs_int8": runs_int8,
        "fp32_fallback": quantized and not runs_int8,
    }
