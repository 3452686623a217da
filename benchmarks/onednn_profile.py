"""Where a Paddle CPU batch spends its time: oneDNN verbose, summed by primitive and data type.

oneDNN reads ``ONEDNN_VERBOSE`` once, when the library initialises, so the profile runs in a
child process (``python -m benchmarks.onednn_profile``). The child builds the project's
:class:`ppminilm.inference.predictor.Predictor`, runs one warm-up batch, prints a marker,
runs the profiled
batch and prints its wall time. Every ``onednn_verbose,exec`` line between the markers is one
executed primitive with its milliseconds; the rest of the wall time is Paddle's own (non-oneDNN)
ops and framework overhead.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

logger_name = __name__
MARK_BEGIN = "=====BENCH-PROFILE-BEGIN====="
MARK_END = "=====BENCH-PROFILE-END====="


def parse_verbose(text: str) -> dict[str, Any]:
    """Sum the oneDNN ``exec`` lines between the profile markers.

    Args:
        text: The child's combined output.

    Returns:
        ``wall_ms`` (the profiled batch), ``onednn_ms`` (sum of primitives), ``other_ms``
        (wall minus oneDNN), ``primitives``: ``{"<kind> <src dtype> (<impl>)": {"count",
        "ms"}}`` sorted by time, and ``int8_primitives`` (executions with s8/u8 source).

    Raises:
        ValueError: If the markers are missing (the child failed before the profiled batch).
    """
    if MARK_BEGIN not in text or MARK_END not in text:
        raise ValueError("oneDNN profile output has no profile markers; the child run failed")
    body = text.split(MARK_BEGIN, 1)[1]
    body, tail = body.split(MARK_END, 1)
    wall_ms = float(tail.split()[0])
    prims: dict[str, dict[str, float]] = {}
    total = 0.0
    int8 = 0
    for line in body.splitlines():
        if not line.startswith(("onednn_verbose,exec", "dnnl_verbose,exec")):
            continue
        fields = line.strip().split(",")
        # Newer oneDNN inserts a timestamp column after the prefix; find the 'exec' column.
        base = fields.index("exec")
        kind, impl = fields[base + 2], fields[base + 3]
        src = fields[base + 5].split()[0].split(":")[0] if len(fields) > base + 5 else "?"
        ms = float(fields[-1])
        key = f"{kind} {src.replace('src_', '').replace('data_', '')} ({impl})"
        rec = prims.setdefault(key, {"count": 0, "ms": 0.0})
        rec["count"] += 1
        rec["ms"] += ms
        total += ms
        if "s8" in src or "u8" in src:
            int8 += 1
    ordered = dict(sorted(prims.items(), key=lambda kv: -kv[1]["ms"]))
    return {
        "wall_ms": round(wall_ms, 2),
        "onednn_ms": round(total, 2),
        "other_ms": round(wall_ms - total, 2),
        "primitives": {
            k: {"count": int(v["count"]), "ms": round(v["ms"], 2)} for k, v in ordered.items()
        },
        "int8_primitives": int8,
    }


def profile_model(
    model_dir: str | Path,
    precision: str,
    batch_file: str | Path,
    num_threads: int,
    timeout_s: float = 300,
) -> dict[str, Any]:
    """Run one profiled batch of ``model_dir`` in a child process with oneDNN verbose on.

    Args:
        model_dir: Paddle inference dir.
        precision: ``fp32`` or ``int8`` (INT8 uses the project's default INT8 op set).
        batch_file: ``.npz`` with ``input_ids``/``token_type_ids``.
        num_threads: CPU math threads.
        timeout_s: Kill the child after this long.

    Returns:
        :func:`parse_verbose`'s dict plus ``model_dir`` and ``precision``.
    """
    env = dict(os.environ, ONEDNN_VERBOSE="1", DNNL_VERBOSE="1")
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.onednn_profile",
        "--model",
        str(model_dir),
        "--precision",
        precision,
        "--batch",
        str(batch_file),
        "--threads",
        str(num_threads),
    ]
    proc = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"oneDNN profile of {model_dir} failed (exit {proc.returncode}): "
            f"{proc.stderr.strip().splitlines()[-1:]}"
        )
    result = parse_verbose(proc.stdout)
    result.update(model_dir=str(model_dir), precision=precision)
    return result


def format_profile(name: str, prof: dict[str, Any], top: int = 12) -> str:
    """Plain-text op-time table of one :func:`profile_model` result."""
    lines = [
        f"{name}: wall {prof['wall_ms']:.1f} ms/batch, oneDNN primitives {prof['onednn_ms']:.1f} "
        f"ms, other (Paddle ops + framework) {prof['other_ms']:.1f} ms, "
        f"INT8 primitive executions {prof['int8_primitives']}",
        f"  {'primitive (src dtype, impl)':<62} {'count':>5} {'ms':>8} {'share':>6}",
    ]
    wall = prof["wall_ms"] or 1.0
    for key, rec in list(prof["primitives"].items())[:top]:
        lines.append(f"  {key:<62} {rec['count']:>5} {rec['ms']:>8.1f} {rec['ms'] / wall:>6.1%}")
    return "\n".join(lines)


def _child(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one oneDNN-verbose batch (bench helper)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--precision", choices=["fp32", "int8"], required=True)
    parser.add_argument("--batch", required=True)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    from ppminilm.config import InferConfig
    from ppminilm.inference.predictor import Predictor

    arrays = dict(np.load(args.batch))
    seq = int(arrays["input_ids"].shape[1])
    cfg = InferConfig(
        max_seq_len=seq,
        batch_size=int(arrays["input_ids"].shape[0]),
        precision=args.precision,
        num_threads=args.threads,
        use_trt=False,
    )
    predictor = Predictor(args.model, cfg)
    predictor.run(arrays)
    sys.stdout.flush()
    print(MARK_BEGIN, flush=True)
    t0 = time.perf_counter()
    predictor.run(arrays)
    ms = (time.perf_counter() - t0) * 1e3
    sys.stdout.flush()
    print(f"{MARK_END}\n{ms:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child())
