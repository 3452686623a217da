"""The load test's own logic (bounds, the bad-request oracle, the verdict) and, in the
integration tier, a short real run against ``ppminilm serve`` on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import loadtest
from benchmarks.bad_requests import BadCase, bad_cases
from benchmarks.http_load import LOOPBACK, Reply


def test_bounded_in_clients_and_time() -> None:
    for argv in (
        ["--clients", "0"],
        ["--clients", "65"],
        ["--duration", "0"],
        ["--duration", "601"],
    ):
        with pytest.raises(SystemExit):
            loadtest.parse_args(argv)
    args = loadtest.parse_args([])
    assert (args.clients, args.duration) == (16, 60.0)
    assert LOOPBACK == "127.0.0.1"


def test_bad_case_oracle() -> None:
    case = BadCase("x", "/p", b"{}", 400)
    good_error = Reply(400, {}, b'{"error": "bad shape"}', 0.0)
    assert case.problem(good_error) == ""
    assert "status 200" in case.problem(Reply(200, {}, b"{}", 0.0))
    assert "not a JSON error" in case.problem(Reply(400, {}, b'{"detail": []}', 0.0))
    cases = bad_cases("m", max_payload_bytes=1000, max_request_texts=4, max_text_chars=50)
    assert len({c.name for c in cases}) == len(cases)
    assert {c.status for c in cases} == {200, 400, 404, 413}
    oversize = next(c for c in cases if c.name == "body over max_payload_bytes")
    assert len(oversize.body) > 1000


def _report(**load) -> dict:
    return {
        "engine": {"engine": "paddle", "precision": "fp32",
                   "batch1": {"p50_ms": 2.0}, "batch32": {"throughput": 1000.0}},
        "lone": {"p50_ms": 3.0, "p95_ms": 4.0, "failed": 0, "requests": 10},
        "load": {"throughput": 600.0, "requests_per_s": 600.0, "failed": 0, "requests": 100,
                 "seconds": 1.0, "p50_ms": 9.0, "p95_ms": 12.0, "p99_ms": 20.0, **load},
        "bad": {"x": {"sent": 3, "expected": 400, "wrong": []}},
        "server_exit": 0, "model": "m", "cpu": "c", "isa": "i", "clients": 16,
        "texts_per_request": 1, "max_batch_size": 32, "max_wait_ms": 5.0, "threads": 2,
        "server_rss_mib": {"VmHWM": 100.0, "VmRSS": 90.0}, "batching": {"batches": 5},
    }  # fmt: skip


def test_verdict_against_the_engine_figures() -> None:
    ok = loadtest.verdict(_report())
    assert ok["throughput_ok"] and ok["lone_p50_ok"] and ok["good_failed"] == 0
    assert ok["throughput_goal"] == 500.0 and ok["lone_p50_goal_ms"] == 4.0
    slow = loadtest.verdict(_report(throughput=400.0, failed=2))
    assert not slow["throughput_ok"] and slow["good_failed"] == 2
    report = _report()
    report["verdict"] = ok
    text = loadtest.markdown(report)
    assert "| 16 clients throughput | 600 texts/s" in text and "ok" in text


@pytest.mark.integration
def test_a_short_real_load_test(tmp_path: Path) -> None:
    code = loadtest.main(
        ["--clients", "4", "--duration", "6", "--lone-requests", "20", "--out", str(tmp_path)]
    )
    report = json.loads((tmp_path / "loadtest.json").read_text())
    assert code == 0, report["verdict"]
    assert report["verdict"]["good_failed"] == 0 and report["verdict"]["bad_wrong"] == 0
    assert report["verdict"]["bad_sent"] > 0 and report["server_exit"] == 0
    assert report["load"]["requests"] > 0 and report["server_rss_mib"]["VmHWM"] > 0
    assert (tmp_path / "loadtest.md").is_file()
