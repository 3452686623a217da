"""The KServe model: a deployable inference dir on its engine, raw text in, labels out.

:class:`TextClassifier` is a ``kserve.Model``. ``load`` opens the dir the benchmark deployed
(``serving.json`` names the engine and precision, ``vocab.txt`` the tokenizer) with the same
settings ``ppminilm infer predict`` uses (:func:`ppminilm.inference.benchmark.model_fields`),
runs one warm-up batch and starts the batching queue. A request goes through the SDK's
``preprocess -> predict -> postprocess``: ``preprocess`` reads the texts (v2 ``InferRequest`` or
v1 ``{"instances": [...]}``), checks them and tokenizes them with the artifact's vocab exactly
as ``infer predict`` does (truncating to the model's ``max_seq_len``, noted in the
:data:`~ppminilm.serving.protocol.TRUNCATED_HEADER` response header); ``predict`` waits for the
batch it joins; the answer is an ``InferResponse`` (v2) or a dict (v1).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ppminilm.compat.kserve import kserve
from ppminilm.config import InferConfig, ServeConfig
from ppminilm.serving import protocol
from ppminilm.serving.batcher import Batcher, BatchStats, Ticket
from ppminilm.serving.errors import BadRequestError, ShuttingDownError

logger = logging.getLogger(__name__)

#: ``platform`` of the model metadata, per engine (OIP: "<framework>_<format>").
PLATFORMS = {
    "paddle": "paddle_inference",
    "openvino": "openvino_ir",
    "onnxruntime": "onnxruntime_onnx",
}


#: Texts the fast encoder must encode exactly as paddlenlp does before the server uses it:
#: CJK, mixed scripts, accents, full-width forms, special tokens written in the text, control
#: and zero-width characters, emoji, a long word.
SELF_CHECK = (
    "这个东西很好用，质量也不错",
    "Hello WORLD café naïve ÀÉÎ",
    "abc[SEP]def [sep] [UNK]",
    "ｆｕｌｌ　ｗｉｄｔｈ　１２３",
    "\x00控制\u200b零宽\t制表",
    "😀😃 emoji ΣΑΣ İstanbul",
    "http://example.com/a?b=c&d=e " + "x" * 120,
)


#: The batcher ticket of the request the current task is handling (:meth:`TextClassifier.announce`).
_ANNOUNCED: contextvars.ContextVar[Ticket | None] = contextvars.ContextVar(
    "ppminilm_announced", default=None
)


@dataclass
class Encoded:
    """One request, tokenized: model inputs plus how to answer it."""

    arrays: dict[str, np.ndarray]
    truncated: list[int]
    protocol: str  # "v1" or "v2"
    outputs: tuple[str, ...]
    request: Any = None
    ticket: Ticket | None = None


def default_model_name(model_dir: str | Path) -> str:
    """The model's task (``serving.json``), else ``ppminilm``: the name in the URL paths."""
    from ppminilm.modeling.export import read_serving_config

    task = read_serving_config(model_dir).task
    return task or "ppminilm"


def infer_config(model_dir: str | Path, cfg: ServeConfig) -> InferConfig:
    """The engine settings for serving ``model_dir``: those of ``ppminilm infer predict``
    (:func:`ppminilm.inference.benchmark.model_fields`), with the server's threads, device and
    batch size."""
    from ppminilm.inference.benchmark import model_fields

    fields = model_fields(model_dir, cfg.engine or None)
    return InferConfig(
        device=cfg.device,
        batch_size=cfg.max_batch_size,
        num_threads=cfg.num_threads,
        use_trt=cfg.device == "gpu",
        **fields,
    )


class TextClassifier(kserve.Model):  # type: ignore[misc]
    """A PP-MiniLM classifier served through KServe (see the module docstring).

    Args:
        name: Model name in the URL paths.
        model_dir: Deployable inference dir.
        cfg: Server settings.
    """

    def __init__(self, name: str, model_dir: str | Path, cfg: ServeConfig) -> None:
        super().__init__(name, return_response_headers=True)
        self.model_dir = Path(model_dir)
        self.cfg = cfg
        self.limits = protocol.Limits(cfg.max_request_texts, cfg.max_text_chars)
        self.engine: Any = None
        self.tokenizer: Any = None
        self.encoder: Any = None
        self.batcher: Batcher | None = None
        self.labels: list[str] = []
        self.max_seq_len = 0
        self.infer_cfg: InferConfig | None = None

    # ------------------------------------------------------------------ lifecycle

    def load(self) -> bool:
        """Open the engine and tokenizer, warm up, start the batching queue."""
        from ppminilm.data.tokenizer import load_tokenizer
        from ppminilm.inference.engines import open_engine

        started = time.perf_counter()
        self.infer_cfg = infer_config(self.model_dir, self.cfg)
        self.tokenizer = load_tokenizer(self.model_dir)
        self.max_seq_len = self.infer_cfg.max_seq_len
        self.encoder = self._fast_encoder()
        if self.infer_cfg.device == "gpu":
            self.engine = self._open_tensorrt()
        else:
            self.engine = open_engine(self.model_dir, self.infer_cfg)
        self.labels = self.engine.labels
        self.batcher = Batcher(
            self.engine.run,
            max_batch_size=self.cfg.max_batch_size,
            max_wait_s=self.cfg.max_wait_ms / 1e3,
            max_queue_rows=self.cfg.max_queue_texts,
        )
        self._warm_up()
        self.ready = True
        logger.info(
            "model %s: %s on %s %s (%s), max_seq_len %d, %d labels, loaded in %.1f s",
            self.name,
            self.model_dir,
            self.engine.name,
            self.infer_cfg.precision,
            self.engine.version,
            self.max_seq_len,
            len(self.labels),
            time.perf_counter() - started,
        )
        return self.ready

    def _open_tensorrt(self) -> Any:
        """Paddle with TensorRT: shape ranges collected on a full and a one-text batch first,
        as the benchmark does (:func:`ppminilm.inference.benchmark.open_for_benchmark`)."""
        import tempfile

        from ppminilm.inference.benchmark import open_for_benchmark

        assert self.infer_cfg is not None
        arrays, _ = self.encode(protocol.TextBatch([("warm-up", None)]))
        full = {k: np.repeat(v, self.cfg.max_batch_size, axis=0) for k, v in arrays.items()}
        self._trt_dir = tempfile.TemporaryDirectory(prefix="ppminilm-serve-trt-")
        return open_for_benchmark(
            self.model_dir, self.infer_cfg, [full, arrays], Path(self._trt_dir.name)
        )

    def _warm_up(self) -> None:
        """Every batch size the queue can form, once, on the worker thread that will serve:
        engines build their kernels per input shape on first sight (oneDNN primitives,
        OpenVINO's dynamic shapes), which would otherwise land on the first requests."""
        import asyncio

        assert self.batcher is not None
        arrays, _ = self.encode(protocol.TextBatch([("warm-up", None)]))

        async def run() -> None:
            assert self.batcher is not None
            for size in range(self.cfg.max_batch_size, 0, -1):
                await self.batcher.submit(
                    {k: np.repeat(v, size, axis=0) for k, v in arrays.items()}
                )

        asyncio.run(run())
        self.batcher.stats = BatchStats()  # the warm-up is not served work

    def stop(self) -> None:
        """Finish the queued work, then stop the worker (``grace_period_s`` at most)."""
        self.ready = False
        if self.batcher is not None and not self.batcher.close(self.cfg.grace_period_s):
            logger.warning("batching queue still busy after %d s", self.cfg.grace_period_s)

    def describe(self) -> dict[str, Any]:
        """Model metadata beyond the OIP fields: labels, length, engine, batching."""
        return {
            "labels": list(self.labels),
            "max_seq_len": self.max_seq_len,
            "engine": self.engine.name if self.engine is not None else "",
            "precision": self.infer_cfg.precision if self.infer_cfg else "",
            "task": self.name,
            "max_batch_size": self.cfg.max_batch_size,
            "max_wait_ms": self.cfg.max_wait_ms,
            "max_request_texts": self.cfg.max_request_texts,
            "truncation_header": protocol.TRUNCATED_HEADER,
            "batching": self.batcher.stats.to_dict() if self.batcher is not None else {},
        }

    @property
    def platform(self) -> str:
        return PLATFORMS.get(self.engine.name, "") if self.engine is not None else ""

    # ------------------------------------------------------------------ OIP metadata

    def get_input_types(self) -> list[dict[str, Any]]:
        return [
            {"name": protocol.TEXT_INPUT, "datatype": "BYTES", "shape": [-1]},
            {"name": protocol.PAIR_INPUT, "datatype": "BYTES", "shape": [-1]},
        ]

    def get_output_types(self) -> list[dict[str, Any]]:
        k = len(self.labels)
        return [
            {"name": protocol.LABEL_OUTPUT, "datatype": "BYTES", "shape": [-1]},
            {"name": protocol.PROBS_OUTPUT, "datatype": "FP32", "shape": [-1, k]},
            {"name": protocol.LOGITS_OUTPUT, "datatype": "FP32", "shape": [-1, k]},
        ]

    # ------------------------------------------------------------------ requests

    def encode(self, texts: protocol.TextBatch) -> tuple[dict[str, np.ndarray], list[int]]:
        """Tokenize like ``infer predict``; also return the rows cut to ``max_seq_len``."""
        if self.encoder is not None:
            return self.encoder.encode(texts.pairs, self.max_seq_len)  # type: ignore[no-any-return]
        from ppminilm.data.tokenizer import encode_pairs_marking_truncation

        return encode_pairs_marking_truncation(self.tokenizer, texts.pairs, self.max_seq_len)

    def _fast_encoder(self) -> Any:
        """paddlenlp's ids, ~30x faster (:mod:`ppminilm.data.encoder`), if this tokenizer has
        the structure it needs and it agrees with paddlenlp on :data:`SELF_CHECK` here."""
        from ppminilm.data.encoder import fast_encoder
        from ppminilm.data.tokenizer import encode_pairs_marking_truncation

        encoder = fast_encoder(self.tokenizer)
        if encoder is None:
            logger.info("tokenizer %s: paddlenlp's own encoder", type(self.tokenizer).__name__)
            return None
        for pairs in ([(t, None) for t in SELF_CHECK], list(zip(SELF_CHECK, SELF_CHECK[::-1]))):
            for length in (self.max_seq_len, 8):
                want, want_cut = encode_pairs_marking_truncation(self.tokenizer, pairs, length)
                got, got_cut = encoder.encode(pairs, length)
                same = all(np.array_equal(want[k], got[k]) for k in want)
                if not same or want_cut != got_cut:
                    logger.warning("fast encoder disagrees with paddlenlp here: not used")
                    return None
        logger.info("fast encoder: %d vocabulary words cached", encoder.prefill())
        return encoder

    @contextlib.contextmanager
    def announce(self) -> Iterator[None]:
        """Announce the current request to the batcher from the moment its route starts (the
        ticket travels to :meth:`preprocess` in a context variable, so a batch waits for
        requests still being read and decoded too); released at the end of the block."""
        if self.batcher is None:
            yield
            return
        ticket = self.batcher.expect()
        token = _ANNOUNCED.set(ticket)
        try:
            yield
        finally:
            _ANNOUNCED.reset(token)
            ticket.release()

    def validate(self, payload: Any) -> Any:
        """Our own checks ran in :meth:`preprocess`; the SDK's generic ones do not apply."""
        return payload

    async def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> Encoded:
        """Texts out of a v2 ``InferRequest`` or a v1 body, checked and tokenized."""
        if self.batcher is None or not self.ready:
            raise ShuttingDownError(f"model {self.name!r} is not loaded")
        # Announced to the batcher until predict() queues it: a batch being formed waits for
        # it. The route announced it already when it started (announce()); else do it here.
        ticket = _ANNOUNCED.get() or self.batcher.expect()
        try:
            if isinstance(payload, kserve.InferRequest):
                outputs = protocol.requested_outputs(payload)
                texts = protocol.texts_from_v2(payload, self.limits)
                arrays, truncated = self.encode(texts)
                return Encoded(arrays, truncated, "v2", outputs, payload, ticket)
            if isinstance(payload, bytes | str):
                raise BadRequestError("expected a JSON object with 'instances'")
            texts, want_logits = protocol.texts_from_v1(payload, self.limits)
            outputs = protocol.ALL_OUTPUTS if want_logits else protocol.DEFAULT_OUTPUTS
            arrays, truncated = self.encode(texts)
            return Encoded(arrays, truncated, "v1", outputs, None, ticket)
        except BaseException:
            ticket.release()
            raise

    async def predict(
        self,
        payload: Encoded,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> Any:
        """Logits from the batch this request joins, shaped as the protocol answers."""
        assert self.batcher is not None
        try:
            logits = await self.batcher.submit(payload.arrays, payload.ticket)
        finally:
            if payload.ticket is not None:
                payload.ticket.release()
        if payload.truncated and response_headers is not None:
            response_headers[protocol.TRUNCATED_HEADER] = ",".join(map(str, payload.truncated))
        if payload.protocol == "v1":
            return protocol.v1_predictions(
                logits, self.labels, protocol.LOGITS_OUTPUT in payload.outputs
            )
        return self._v2_response(payload, logits)

    def _v2_response(self, payload: Encoded, logits: np.ndarray) -> Any:
        request = payload.request
        outputs = []
        for name, datatype, shape, data in protocol.v2_outputs(
            logits, self.labels, payload.outputs
        ):
            outputs.append(kserve.InferOutput(name=name, shape=shape, datatype=datatype, data=data))
        return kserve.InferResponse(
            response_id=request.id or uuid.uuid4().hex,
            model_name=self.name,
            infer_outputs=outputs,
            use_binary_outputs=request.use_binary_outputs,
            requested_outputs=request.request_outputs,
        )

    async def postprocess(
        self,
        result: Any,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> Any:
        return result
