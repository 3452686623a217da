"""The bench's own logic: speed-up math, goals, table, timing plan, log/profile parsing, and the
Paddle/ONNX rows on a real tiny model (paddle2onnx export, onnxruntime FP32 and dynamic INT8)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.notes import gap_notes, paddle_breakdown
from benchmarks.onednn_profile import MARK_BEGIN, MARK_END, parse_verbose, profile_model
from benchmarks.pipeline_timing import parse_stage_times, stage_table
from benchmarks.table import (
    COLUMNS,
    GOAL_INT8_SPEEDUP,
    GOAL_MAX_ACC_DROP_POINTS,
    add_speedups,
    evaluate_goals,
    goals_markdown,
    markdown_table,
    speedup,
)
from benchmarks.timing import (
    TimingPlan,
    plan_slices,
    split_batches,
    summarize_passes,
    time_model,
    time_models,
)
from ppminilm.compat.paddle import paddle
from ppminilm.config import ModelArch
from ppminilm.data import load_task_dir
from ppminilm.data.tokenizer import encode_examples, load_tokenizer
from ppminilm.errors import EXIT_DEVICE
from ppminilm.modeling.ernie import build_model
from ppminilm.modeling.export import export_static
from ppminilm.modeling.saved import ModelInfo

#: Tiny model and plan: the tests check logic and plumbing, not speed.
SEQ = 32
BATCH = 8
TINY_PLAN = TimingPlan(batch_size=BATCH, seq_len=SEQ, warmup_batches=1, repeats=2, timed_batches=2)
#: FP32 Paddle vs onnxruntime logits of the same program.
ORT_ATOL = 1e-4
#: Seconds within which --gpu 1 must fail on a CPU-only paddle (no model is built first).
GPU_FAIL_FAST_S = 20.0


def _timed_row(key: str, device: str, ms: float, baseline: bool = False) -> dict:
    return {
        "key": key,
        "device": device,
        "model": key,
        "engine": "e",
        "baseline": baseline,
        "timing": {"batch_ms": ms, "latency_ms": {"p95": ms}, "throughput": 32000 / ms},
    }


# --------------------------------------------------------------------------- pure logic


def test_speedup_math_and_per_device_baseline() -> None:
    assert speedup(5000.0, 625.0) == pytest.approx(8.0)
    with pytest.raises(ValueError, match="> 0"):
        speedup(5000.0, 0.0)
    rows = [
        _timed_row("paddle_bert_base_fp32", "cpu", 4000.0, baseline=True),
        _timed_row("paddle_6l_pruned_int8", "cpu", 500.0),
        _timed_row("trt_bert_base_fp32", "gpu", 40.0, baseline=True),
        _timed_row("trt_6l_pruned_int8", "gpu", 10.0),
        {"key": "ort_6l_pruned_int8", "device": "cpu", "error": "no onnxruntime"},
    ]
    add_speedups(rows)
    assert [r.get("speedup") for r in rows] == [1.0, 8.0, 1.0, 4.0, None]


def test_goals_met_missed_and_unmeasured() -> None:
    rows = [
        _timed_row("paddle_bert_base_fp32", "cpu", 3000.0, baseline=True),
        _timed_row("paddle_6l_pruned_int8", "cpu", 600.0),
        _timed_row("ort_6l_pruned_int8", "cpu", 400.0),
    ]
    add_speedups(rows)
    goals = evaluate_goals(rows, acc_fp32_6l=0.80, acc_int8=0.79)
    speed, drop, ort = goals
    assert speed["met"] is False and f"{GOAL_INT8_SPEEDUP - 5.0:.2f}x" in speed["gap"]
    assert drop["met"] is False
    assert drop["gap"] == f"over by {1.0 - GOAL_MAX_ACC_DROP_POINTS:.2f} points"
    assert ort["met"] is False and "1.50x slower" in ort["gap"]

    rows[1]["timing"]["batch_ms"] = 300.0
    add_speedups(rows)
    goals = evaluate_goals(rows, acc_fp32_6l=0.80, acc_int8=0.798)
    assert [g["met"] for g in goals] == [True, True, True]
    assert all(g["gap"] == "" for g in goals)

    unmeasured = evaluate_goals(rows[:1], None, None)
    assert [g["met"] for g in unmeasured] == [None, None, None]
    assert "not measured" in goals_markdown(unmeasured)


def test_markdown_table_has_every_row_and_column() -> None:
    base = _timed_row("paddle_bert_base_fp32", "cpu", 3000.0, True)
    base.update(params=102267648, flops=10871635968, accuracy_note="n/a (random weights)")
    int8 = _timed_row("paddle_6l_pruned_int8", "cpu", 400.0)
    int8.update(params=49115520, flops=4076863488, accuracy=0.7913, accuracy_mark=" †")
    int8["int8_note"] = "yes: fc x38"
    failed = {"key": "ort", "device": "cpu", "model": "m", "engine": "ORT", "error": "no ml_dtypes"}
    rows = [base, int8, failed]
    add_speedups(rows)
    lines = markdown_table(rows).splitlines()
    assert len(lines) == 2 + len(rows)
    assert all(line.count("|") == len(COLUMNS) + 1 for line in lines)
    assert "102.3M" in lines[2] and "10.87B" in lines[2] and "1.00x" in lines[2]
    assert "7.50x" in lines[3] and "79.13 †" in lines[3] and "yes: fc x38" in lines[3]
    assert "not run: no ml_dtypes" in lines[4]


def test_timing_plan_slices_and_summary() -> None:
    plan = TimingPlan(warmup_batches=2, timed_batches=3, repeats=5, batch_size=4)
    assert plan.batches_needed == 5 and "2 warm-up batches" in plan.describe()
    with pytest.raises(ValueError, match="repeats"):
        TimingPlan(repeats=0)
    batches = [{"input_ids": np.full((4, 8), i)} for i in range(6)]
    warm, timed = plan_slices(batches, plan)
    assert [int(b["input_ids"][0, 0]) for b in warm + timed] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="needs 5"):
        plan_slices(batches[:4], plan)
    s = summarize_passes([3.0, 1.0, 2.0, 9.0, 2.5], [0.5] * 15, batches_per_pass=3, batch_size=4)
    assert s["median_pass_s"] == 2.5
    assert s["batch_ms"] == pytest.approx(2500 / 3, abs=0.01)
    assert s["throughput"] == pytest.approx(12 / 2.5)
    assert s["latency_ms"]["p50"] == 500.0


def test_parse_stage_times_parallel_tasks_and_midnight() -> None:
    log = "\n".join(
        [
            "23:59:50.000 - INFO - Executing task \x1b[96m'build-data-2'\x1b[0m",
            "23:59:58.500 - INFO - Task \x1b[96m'build-data-2'\x1b[0m finished with status "
            "\x1b[92mSUCCESS\x1b[0m",
            "23:59:59.000 - INFO - Executing task 'finetune-2'",
            "00:00:01.000 - INFO - Executing task 'finetune-2'",
            "2026-11-24 00:00:09,000 INFO Task 'finetune-2' finished with status SUCCESS",
            "00:00:21.000 - INFO - Task 'finetune-2' finished with status SUCCESS",
            "00:00:21.500 - INFO - Executing task 'prune-2'",
        ]
    )
    stages = parse_stage_times(log)
    assert list(stages) == ["build-data-2", "finetune-2", "prune-2"]
    assert stages["build-data-2"] == {"runs": 1, "busy_s": 8.5, "span_s": 8.5, "status": "SUCCESS"}
    assert stages["finetune-2"]["runs"] == 2
    assert stages["finetune-2"]["busy_s"] == pytest.approx(10.0 + 20.0)
    assert stages["finetune-2"]["span_s"] == pytest.approx(22.0)
    assert stages["prune-2"]["status"] == "RUNNING"
    table = stage_table({"stages": stages, "command": "x", "seconds": 31.5, "returncode": 0})
    assert "| finetune-2 | 2 | 30.0 | 22.0 | SUCCESS |" in table


def test_parse_onednn_verbose_and_breakdown() -> None:
    text = "\n".join(
        [
            "onednn_verbose,exec,cpu,inner_product,brgemm,forward_inference,src_f32::b,,,mb1,9.0",
            MARK_BEGIN,
            "onednn_verbose,exec,cpu,inner_product,brgemm:avx512_core_vnni,forward_inference,"
            "src_s8:a:blocked:ab::f0 wei_s8:a,attr,,mb4096ic768oc576,2.0",
            "onednn_verbose,exec,cpu,inner_product,brgemm:avx512_core_vnni,forward_inference,"
            "src_u8:a:blocked:ab::f0 wei_s8:a,attr,,mb4096ic2304oc768,3.0",
            "onednn_verbose,exec,cpu,matmul,brg:avx512_core,undef,src_f32::blocked:acbd::f0,,,x,1.5",
            "onednn_verbose,exec,cpu,reorder,jit:uni,undef,src_f32::blocked:abc::f0 dst_s8,,,x,0.5",
            "onednn_verbose,exec,cpu,softmax,jit:avx512_core,forward_inference,src_f32::b,,,x,1.0",
            MARK_END,
            "10.0",
        ]
    )
    prof = parse_verbose(text)
    assert prof["wall_ms"] == 10.0 and prof["onednn_ms"] == 8.0 and prof["other_ms"] == 2.0
    assert prof["int8_primitives"] == 2
    assert next(iter(prof["primitives"])) == "inner_product u8 (brgemm:avx512_core_vnni)"
    parts = paddle_breakdown(prof)
    assert parts == {
        "int8_compute": 5.0,
        "fp32_compute": 1.5,
        "reorder": 0.5,
        "other_onednn": 1.0,
        "outside_onednn": 2.0,
        "wall": 10.0,
    }
    with pytest.raises(ValueError, match="markers"):
        parse_verbose("onednn_verbose,exec,...")
    goals = [
        {"goal": "pruned+INT8 speed-up vs BERT-base FP32 (CPU)", "met": False, "gap": "short"},
        {"goal": "accuracy drop, x", "met": False, "gap": "over by 0.30 points"},
        {"goal": "Paddle INT8 faster than onnxruntime INT8", "met": True, "gap": ""},
    ]
    notes = gap_notes(goals, prof, None, None, {"fp32_6l": 0.8, "fp32_pruned": 0.795,
                                                "int8_pruned": 0.792})  # fmt: skip
    assert len(notes) == 2
    assert "int8_compute 5 ms (50%)" in notes[0]
    assert "-0.50 points" in notes[1] and "-0.30 points" in notes[1]


# --------------------------------------------------------------------------- real tiny model


@pytest.fixture(scope="module")
def tiny_bench(local_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny random classifier exported for the local review task, and its dev batches."""
    task_dir = local_data_dir / "tasks" / "local_reviews"
    vocab_dir = local_data_dir / "vocab"
    data = load_task_dir(task_dir)
    tokenizer = load_tokenizer(vocab_dir)
    arch = ModelArch(
        num_layers=2,
        hidden_size=32,
        num_heads=2,
        intermediate_size=64,
        vocab_size=len(tokenizer),
        max_position=64,
        dropout=0.0,
    )
    paddle.seed(11)
    model = build_model(arch, "classifier", len(data.labels))
    root = tmp_path_factory.mktemp("bench")
    fp32 = export_static(
        model,
        ModelInfo(arch, "classifier", data.task, list(data.labels)),
        root / "fp32",
        max_seq_len=SEQ,
        tokenizer_dir=vocab_dir,
    )
    arrays = encode_examples(tokenizer, data.dev, data.task, SEQ)
    labels = np.asarray([data.labels.index(e["label"]) for e in data.dev])
    return {
        "root": root,
        "fp32": fp32,
        "data": data,
        "arrays": arrays,
        "labels": labels,
        "batches": split_batches(arrays, BATCH),
    }


@pytest.mark.integration
def test_paddle_rows_fp32_and_int8_with_kernel_check(tiny_bench: dict) -> None:
    from benchmarks.models import quantize_seed_model
    from benchmarks.rows import paddle_accuracy, paddle_row

    meta = {"key": "k", "model": "tiny", "engine": "Paddle CPU"}
    row = paddle_row(meta, tiny_bench["fp32"], "fp32", tiny_bench["batches"], TINY_PLAN, 1)
    assert row["timing"]["batch_ms"] > 0 and len(row["timing"]["pass_s"]) == TINY_PLAN.repeats
    assert row["int8_note"] == "- (fp32)" and row["int8_check"]["int8_ops"] == 0

    summary = quantize_seed_model(tiny_bench["root"], tiny_bench["fp32"], tiny_bench["data"], SEQ)
    row8 = paddle_row(meta, summary["model_dir"], "int8", tiny_bench["batches"], TINY_PLAN, 1)
    assert row8["int8_check"]["runs_int8"] is True
    assert row8["int8_note"].startswith("yes: fc x")

    acc = paddle_accuracy(
        tiny_bench["fp32"], "fp32", tiny_bench["arrays"], tiny_bench["labels"], BATCH, 1
    )
    assert acc["examples"] == len(tiny_bench["labels"]) and 0.0 <= acc["accuracy"] <= 1.0


@pytest.mark.integration
def test_onnx_export_matches_paddle_and_dynamic_int8_runs_int8(tiny_bench: dict) -> None:
    from benchmarks.onnx_bench import OrtRunner, export_onnx, ort_profile, quantize_onnx_dynamic
    from benchmarks.rows import ort_row
    from ppminilm.config import InferConfig
    from ppminilm.inference.predictor import Predictor

    onnx_dir = tiny_bench["root"] / "onnx"
    fp32 = export_onnx(tiny_bench["fp32"], onnx_dir / "tiny.onnx")
    batch = tiny_bench["batches"][0]
    cfg = InferConfig(max_seq_len=SEQ, batch_size=BATCH, num_threads=1, use_trt=False)
    expected = Predictor(tiny_bench["fp32"], cfg).run(batch)
    np.testing.assert_allclose(OrtRunner(fp32, 1).run(batch), expected, atol=ORT_ATOL)

    q = quantize_onnx_dynamic(fp32, onnx_dir / "tiny_int8.onnx")
    assert q["int8_nodes"].get("MatMulInteger", 0) > 0
    prof = ort_profile(q["int8_path"], batch, 1, onnx_dir / "profile")
    assert sum(prof["int8_kernels_run"].values()) > 0
    meta = {"key": "ort_6l_pruned_int8", "model": "tiny", "engine": "ORT INT8"}
    row = ort_row(
        meta, q["int8_path"], tiny_bench["batches"], TINY_PLAN, 1, {"quantize": q, "profile": prof}
    )
    assert row["precision"] == "int8" and row["int8_note"].startswith("yes: MatMulInteger x")
    assert row["timing"]["throughput"] > 0


@pytest.mark.integration
def test_onednn_profile_child_counts_int8_primitives(tiny_bench: dict, tmp_path: Path) -> None:
    batch_file = tmp_path / "batch.npz"
    np.savez(batch_file, **tiny_bench["batches"][0])
    prof = profile_model(tiny_bench["fp32"], "fp32", batch_file, 1)
    assert prof["wall_ms"] > 0 and prof["int8_primitives"] == 0
    assert any(k.startswith("inner_product f32") for k in prof["primitives"])


@pytest.mark.integration
def test_time_model_runs_warmup_then_repeats(tiny_bench: dict) -> None:
    seen: list[int] = []

    def run(batch: dict) -> np.ndarray:
        seen.append(int(batch["input_ids"].sum()))
        return np.zeros((len(batch["input_ids"]), 2))

    result = time_model(run, tiny_bench["batches"], TINY_PLAN)
    sums = [int(b["input_ids"].sum()) for b in tiny_bench["batches"][:3]]
    assert seen == [sums[0]] + [sums[1], sums[2]] * TINY_PLAN.repeats
    assert len(result["pass_s"]) == TINY_PLAN.repeats


@pytest.mark.integration
def test_time_models_interleaves_rows_round_by_round(tiny_bench: dict) -> None:
    calls: list[str] = []

    def runner(name: str):
        def run(batch: dict) -> np.ndarray:
            calls.append(name)
            return np.zeros((len(batch["input_ids"]), 2))

        return run

    results = time_models({"a": runner("a"), "b": runner("b")}, tiny_bench["batches"], TINY_PLAN)
    warm = TINY_PLAN.warmup_batches
    per_pass = TINY_PLAN.timed_batches
    assert calls[: 2 * warm] == ["a"] * warm + ["b"] * warm
    rounds = calls[2 * warm :]
    assert rounds == (["a"] * per_pass + ["b"] * per_pass) * TINY_PLAN.repeats
    assert set(results) == {"a", "b"} and all(r["batch_ms"] >= 0 for r in results.values())


# --------------------------------------------------------------------------- CLI


def test_gpu_mode_fails_fast_on_a_cpu_build(tmp_path: Path) -> None:
    if paddle.device.is_compiled_with_cuda():
        pytest.skip("paddle has CUDA here; the GPU rows would run")
    from benchmarks.run import main

    t0 = time.perf_counter()
    assert main(["--gpu", "1", "--out", str(tmp_path / "bench")]) == EXIT_DEVICE
    assert time.perf_counter() - t0 < GPU_FAIL_FAST_S
    assert not (tmp_path / "bench").exists()


def test_from_run_without_a_distilled_student_is_a_clear_error(tmp_path: Path) -> None:
    from benchmarks.models import find_distilled_student

    with pytest.raises(FileNotFoundError, match="distill"):
        find_distilled_student(tmp_path)
    student = tmp_path / "pipeline_root" / "run-1" / "distill-2" / "student"
    student.mkdir(parents=True)
    (student / "model_config.json").write_text("{}", encoding="utf-8")
    assert find_distilled_student(tmp_path) == student
