"""Does general distillation pay off? Distilled student vs random init, same fine-tuning.

Builds the local data, pre-trains the local teacher, distils the student (local profile), then
fine-tunes the distilled student and a randomly initialised student of the same shape on
``local_reviews`` with the same settings for several seeds, and prints both dev accuracies.

    python -m benchmarks.distill_vs_scratch --out runs/distill_vs_scratch --seeds 1 2
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

logger = logging.getLogger("ppminilm.distill_vs_scratch")


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/distill_vs_scratch")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--task", default="local_reviews")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", force=True)

    from ppminilm.config import DataConfig, DistillConfig, FinetuneConfig, TeacherConfig
    from ppminilm.config.profiles import config_for
    from ppminilm.data.local import build_local
    from ppminilm.stages.distill.train import run_distill
    from ppminilm.stages.finetune import run_finetune
    from ppminilm.stages.teacher import run_pretrain_teacher

    out = Path(args.out)
    data = out / "data"
    started = time.perf_counter()
    if not (data / "tasks" / args.task).is_dir():
        build_local(data, config_for(DataConfig, "local"))
    teacher = run_pretrain_teacher(
        data / "corpus", data / "vocab", out / "teacher", config_for(TeacherConfig, "local")
    )
    distill_cfg = config_for(DistillConfig, "local")
    distilled = run_distill(
        data / "corpus", out / "teacher", out / "student", distill_cfg, vocab_dir=data / "vocab"
    )
    results: dict[str, dict[int, float]] = {"distilled": {}, "scratch": {}}
    for seed in args.seeds:
        cfg = config_for(
            FinetuneConfig,
            "local",
            {"task": args.task, "batch_size": args.batch_size,
             "learning_rate": args.learning_rate, "seed": seed},
        )  # fmt: skip
        task_dir = data / "tasks" / args.task
        results["distilled"][seed] = run_finetune(
            task_dir, out / "student", out / f"ft_distilled_{seed}", cfg
        )["best_dev_acc"]
        results["scratch"][seed] = run_finetune(
            task_dir, "scratch", out / f"ft_scratch_{seed}", cfg,
            arch=distill_cfg.student, tokenizer_dir=data / "vocab",
        )["best_dev_acc"]  # fmt: skip
    summary = {
        "task": args.task,
        "teacher": {k: teacher.get(k) for k in ("final_loss", "final_mlm_accuracy", "seconds")},
        "distill": {k: distilled.get(k) for k in ("final_loss", "steps", "seconds")},
        "dev_acc": results,
        "mean": {k: statistics.mean(v.values()) for k, v in results.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out / "distill_vs_scratch.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(f"| init | {' | '.join(f'seed {s}' for s in args.seeds)} | mean |")
    print(f"|---|{'---|' * len(args.seeds)}---|")
    for name, accs in results.items():
        cells = " | ".join(f"{accs[s]:.3f}" for s in args.seeds)
        print(f"| {name} | {cells} | {summary['mean'][name]:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
