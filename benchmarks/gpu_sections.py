"""The paddle-using sections of the device check, one per child process (see gpu_check.py).

``python -m benchmarks.gpu_sections SECTION RESULT_JSON [--steps N] [--repeats N]`` runs one
section and writes ``{"status": "ok", ...}`` or ``{"status": "failed", "error": ...}``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

logger = logging.getLogger("benchmarks.gpu_sections")

#: The seed's timing shape.
BATCH, SEQ = 32, 128
#: Warm-up batches per TensorRT row (engines are built before; this settles clocks).
TRT_WARMUP = 10
TRT_TIMED_BATCHES = 4
#: Vocabulary of the random-id inputs (the seed's; the ids index random embeddings).
SEED_VOCAB = 21128
#: Synthetic distillation corpus: sentences of random CJK characters.
CORPUS_SENTENCES, CORPUS_CHARS = 600, 3000
TEACHER = {"num_layers": 4, "hidden_size": 128, "num_heads": 4, "intermediate_size": 512}
STUDENT = {"num_layers": 4, "hidden_size": 64, "num_heads": 4, "intermediate_size": 256}


def section_paddle(_args: argparse.Namespace) -> dict[str, Any]:
    """What this paddle was built with and what it sees."""
    import paddle

    out: dict[str, Any] = {
        "version": paddle.__version__,
        "commit": paddle.version.commit,
        "compiled_with_cuda": bool(paddle.device.is_compiled_with_cuda()),
        "cuda": paddle.version.cuda(),
        "cudnn": paddle.version.cudnn(),
    }
    if out["compiled_with_cuda"]:
        count = paddle.device.cuda.device_count()
        out["gpu_count"] = count
        out["gpus"] = [paddle.device.cuda.get_device_name(i) for i in range(count)]
        out["trt_compile_version"] = list(paddle.inference.get_trt_compile_version())
        out["trt_runtime_version"] = list(paddle.inference.get_trt_runtime_version())
        out["trt_versions_equal"] = out["trt_compile_version"] == out["trt_runtime_version"]
        if not any(out["trt_compile_version"]):
            out["trt_compile_version"] = None
    return out


def section_run_check(_args: argparse.Namespace) -> dict[str, Any]:
    """``paddle.utils.run_check()`` with its output captured."""
    import paddle

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        paddle.utils.run_check()
    text = buf.getvalue()
    works = "works well" in text
    return {
        "status": "ok" if works else "failed",
        "gpu": "GPU" in text and works,
        "output": text.strip().splitlines()[-5:],
        **({} if works else {"error": "run_check did not report 'works well'"}),
    }


def _random_batches(n_batches: int, seed: int = 0) -> list[dict[str, Any]]:
    import numpy as np

    rng = np.random.RandomState(seed)
    out = []
    for _ in range(n_batches):
        ids = rng.randint(1, SEED_VOCAB, (BATCH, SEQ)).astype("int64")
        out.append({"input_ids": ids, "token_type_ids": np.zeros_like(ids)})
    return out


def section_tensorrt(args: argparse.Namespace) -> dict[str, Any]:
    """The bench's TensorRT rows at the seed shapes (random weights)."""
    from benchmarks.models import seed_archs
    from benchmarks.rows import open_paddle, time_rows
    from benchmarks.timing import TimingPlan
    from ppminilm.compat.paddle import set_seed
    from ppminilm.config import QuantConfig
    from ppminilm.modeling.accounting import count_flops, count_params
    from ppminilm.modeling.ernie import build_model
    from ppminilm.modeling.export import export_static
    from ppminilm.modeling.saved import ModelInfo
    from ppminilm.stages.quantize import quantize_arrays

    plan = TimingPlan(
        batch_size=BATCH,
        seq_len=SEQ,
        warmup_batches=TRT_WARMUP,
        repeats=args.repeats,
        timed_batches=TRT_TIMED_BATCHES,
    )
    batches = _random_batches(plan.batches_needed)
    work = Path(tempfile.mkdtemp(prefix="gpu-check-trt-"))
    _, vocab = _synthetic_corpus(work)  # serving dirs carry a tokenizer; inputs are random ids
    dirs, metas = {}, {}
    for key, (label, arch) in seed_archs().items():
        set_seed(2021)
        model = build_model(arch, "classifier", 2)
        info = ModelInfo(arch=arch, kind="classifier", task="gpu_check", labels=["0", "1"])
        dirs[key] = export_static(model, info, work / key, max_seq_len=SEQ, tokenizer_dir=vocab)
        metas[key] = {"model": label, "params": count_params(arch), "flops": count_flops(arch)}
        del model
    calib = {k: v[:16] for k, v in _random_batches(1, seed=1)[0].items()}
    ptq = QuantConfig(algos=("abs_max",), batch_nums=(4,), batch_sizes=(4,), max_seq_len=SEQ)
    int8_dir = quantize_arrays(dirs["6l_pruned"], work / "6l_pruned_int8", calib, ptq)
    rows = []
    for key in ("bert_base", "6l", "6l_pruned"):
        for precision in ("fp32", "fp16"):
            meta = {
                "key": f"trt_{key}_{precision}",
                "engine": f"TensorRT {precision}",
                **metas[key],
            }
            opened = open_paddle(meta, dirs[key], precision, batches, plan, 1, "gpu", work)
            rows += time_rows([opened], batches, plan)
    meta = {"key": "trt_6l_pruned_int8", "engine": "TensorRT int8", **metas["6l_pruned"]}
    rows += time_rows(
        [open_paddle(meta, int8_dir, "int8", batches, plan, 1, "gpu", work)], batches, plan
    )
    base = next(r for r in rows if r["key"] == "trt_bert_base_fp32")["timing"]["batch_ms"]
    table = [
        {
            "key": r["key"],
            "model": r["model"],
            "engine": r["engine"],
            "batch_ms": round(r["timing"]["batch_ms"], 3),
            "throughput": round(r["timing"]["throughput"], 1),
            "speedup_vs_bert_base_fp32": round(base / r["timing"]["batch_ms"], 2),
        }
        for r in rows
    ]
    summary = ", ".join(f"{t['key']} {t['batch_ms']:.2f} ms" for t in table)
    return {"plan": plan.to_dict(), "rows": table, "summary": summary}


def _synthetic_corpus(root: Path) -> tuple[Path, Path]:
    import numpy as np

    from ppminilm.data.tokenizer import build_vocab

    rng = np.random.RandomState(0)
    chars = [chr(0x4E00 + i) for i in range(CORPUS_CHARS)]
    corpus = root / "corpus"
    corpus.mkdir()
    for shard in range(3):
        lines = [
            "".join(rng.choice(chars, rng.randint(8, 40))) for _ in range(CORPUS_SENTENCES // 3)
        ]
        (corpus / f"part-{shard:05d}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    build_vocab(sorted(corpus.glob("*.txt")), root / "vocab", min_freq=1)
    return corpus, root / "vocab"


def _tiny_distill_setup(root: Path, steps: int) -> tuple[Path, Path, Any]:
    from ppminilm.compat.paddle import paddle
    from ppminilm.config import DistillConfig, ModelArch
    from ppminilm.data.tokenizer import load_tokenizer, vocab_size
    from ppminilm.modeling.ernie import build_model
    from ppminilm.modeling.saved import ModelInfo, save_model

    corpus, vocab = _synthetic_corpus(root)
    arch = ModelArch(**TEACHER, vocab_size=vocab_size(load_tokenizer(vocab)), hidden_act="gelu")
    paddle.seed(1)
    teacher = root / "teacher"
    save_model(
        build_model(arch, "mlm"), teacher, ModelInfo(arch=arch, kind="mlm"), tokenizer_dir=vocab
    )
    cfg = DistillConfig.from_dict(
        {
            "student": STUDENT,
            "teacher_layer": TEACHER["num_layers"],
            "student_layer": STUDENT["num_layers"],
            "num_relation_heads": 4,
            "beta": 0.5,
            "learning_rate": 1e-3,
            "warmup_steps": 5,
            "max_steps": steps,
            "batch_size": 32,
            "max_seq_len": 64,
            "save_steps": max(steps // 2, 1),
            "logging_steps": max(steps // 5, 1),
            "use_amp": True,
        }
    )
    return corpus, teacher, cfg


def _distill_result(summary: dict[str, Any], root: Path) -> dict[str, Any]:
    curve = json.loads((root / "student" / "loss_curve.json").read_text())
    ok = bool(summary.get("amp")) and curve[-1]["loss"] < curve[0]["loss"]
    return {
        "status": "ok" if ok else "failed",
        **({} if ok else {"error": f"amp={summary.get('amp')}, loss did not fall: {curve}"}),
        "amp": summary.get("amp"),
        "world_size": summary.get("world_size"),
        "steps": summary.get("steps"),
        "seconds": summary.get("seconds"),
        "first_loss": curve[0]["loss"],
        "last_loss": curve[-1]["loss"],
        "curve": curve,
        "summary": f"loss {curve[0]['loss']:.4f} -> {curve[-1]['loss']:.4f} in "
        f"{summary.get('steps')} steps, amp={summary.get('amp')}, "
        f"{summary.get('world_size')} rank(s)",
    }


def section_distill_amp(args: argparse.Namespace) -> dict[str, Any]:
    """A short AMP distillation on one GPU."""
    from ppminilm.stages.distill.train import run_distill

    root = Path(tempfile.mkdtemp(prefix="gpu-check-distill-"))
    corpus, teacher, cfg = _tiny_distill_setup(root, args.steps)
    summary = run_distill(corpus, teacher, root / "student", cfg, checkpoint_dir=root / "ckpt")
    return _distill_result(summary, root)


def section_distill_ranks(args: argparse.Namespace) -> dict[str, Any]:
    """The same on 2 GPUs through Paddle's launcher (NCCL): the single-node multi-GPU path."""
    from ppminilm.stages.distill.launch import run_distill_processes

    root = Path(tempfile.mkdtemp(prefix="gpu-check-ranks-"))
    corpus, teacher, cfg = _tiny_distill_setup(root, args.steps)
    summary = run_distill_processes(
        corpus, teacher, root / "student", cfg, nproc=2, checkpoint_dir=str(root / "ckpt")
    )
    return _distill_result(summary, root)


SECTIONS = {
    "paddle": section_paddle,
    "run_check": section_run_check,
    "tensorrt": section_tensorrt,
    "distill_amp": section_distill_amp,
    "distill_ranks": section_distill_ranks,
}


def main(argv: list[str] | None = None) -> int:
    """Run one section; its result JSON is written even when it fails."""
    p = argparse.ArgumentParser()
    p.add_argument("section", choices=sorted(SECTIONS))
    p.add_argument("result")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    import zlib  # noqa: F401 -- must precede paddle (see ppminilm.compat.paddle)

    t0 = time.perf_counter()
    try:
        result = {"status": "ok", **SECTIONS[args.section](args)}
    except Exception as exc:  # reported in the JSON: the check goes on with the next section
        result = {
            "status": "failed",
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc().splitlines()[-15:],
        }
    result.setdefault("section_seconds", round(time.perf_counter() - t0, 1))
    Path(args.result).write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    return 0 if result["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
