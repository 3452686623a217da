"""The wire format: texts out of OIP v2 and KServe v1 requests, labels back into responses.

OIP v2 (``POST /v2/models/<name>/infer``)::

    {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["好用", "太差"]},
                {"name": "text_pair", ...}],                       # optional, same shape
     "outputs": [{"name": "label"}, {"name": "logits"}]}           # optional

answers ``label`` (BYTES ``[n]``) and ``probabilities`` (FP32 ``[n, k]``, label order as in the
model metadata), or the outputs asked for (``label``, ``probabilities``, ``logits``).

KServe v1 (``POST /v1/models/<name>:predict``)::

    {"instances": ["好用", ["句子一", "句子二"], {"text": "...", "text_pair": "..."}],
     "return_logits": false}

answers ``{"predictions": [{"label": ..., "probabilities": {label: p, ...}}, ...]}``.

Everything here is plain Python and numpy; a refusal is a
:class:`~ppminilm.serving.errors.RequestError` naming the input, the index and what was
expected.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ppminilm.serving.errors import BadRequestError, PayloadTooLargeError

TEXT_INPUT = "text"
PAIR_INPUT = "text_pair"
LABEL_OUTPUT = "label"
PROBS_OUTPUT = "probabilities"
LOGITS_OUTPUT = "logits"
#: Outputs a v2 request gets when it names none.
DEFAULT_OUTPUTS = (LABEL_OUTPUT, PROBS_OUTPUT)
ALL_OUTPUTS = (LABEL_OUTPUT, PROBS_OUTPUT, LOGITS_OUTPUT)
#: Response header listing the texts cut to the model's ``max_seq_len`` tokens (0-based
#: indices in request order, comma-separated); absent when none was.
TRUNCATED_HEADER = "x-ppminilm-truncated"
V1_KEYS = ("instances", "return_logits")


@dataclass(frozen=True)
class Limits:
    """What one request may carry (from :class:`~ppminilm.config.ServeConfig`)."""

    max_texts: int
    max_chars: int


@dataclass
class TextBatch:
    """The texts of one request: ``pairs[i] = (text_a, text_b or None)``."""

    pairs: list[tuple[str, str | None]]

    def __len__(self) -> int:
        return len(self.pairs)


def check_texts(texts: Sequence[Any], what: str, limits: Limits) -> list[str]:
    """Each item a non-empty string of at most ``limits.max_chars`` characters.

    Raises:
        BadRequestError: Naming the input and the index of the first bad item.
    """
    out = []
    for i, text in enumerate(texts):
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BadRequestError(
                    f"{what}[{i}] is not UTF-8 ({exc.reason} at byte {exc.start})"
                ) from None
        if not isinstance(text, str):
            raise BadRequestError(f"{what}[{i}] is {type(text).__name__}; expected a string")
        if not text.strip():
            raise BadRequestError(f"{what}[{i}] is empty; expected text to classify")
        if len(text) > limits.max_chars:
            raise BadRequestError(
                f"{what}[{i}] has {len(text)} characters; at most {limits.max_chars} are "
                "taken (texts over the model's max_seq_len tokens are truncated, longer "
                "ones refused)"
            )
        out.append(text)
    return out


def _count(n: int, limits: Limits) -> None:
    if n == 0:
        raise BadRequestError("no texts given; expected at least one")
    if n > limits.max_texts:
        raise PayloadTooLargeError(
            f"{n} texts in one request; at most {limits.max_texts} (split the request)"
        )


def _v2_values(infer_input: Any) -> tuple[list[Any], int]:
    """Flat values of a v2 BYTES input and its row count, checked against its shape."""
    name = infer_input.name
    if infer_input.datatype != "BYTES":
        raise BadRequestError(f"input {name!r} has datatype {infer_input.datatype}; expected BYTES")
    shape = list(infer_input.shape or [])
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
        raise BadRequestError(f"input {name!r} has shape {shape}; expected [n] or [n, 1]")
    if shape[0] < 0:
        raise BadRequestError(f"input {name!r} has shape {shape}; sizes must be >= 0")
    if getattr(infer_input, "_raw_data", None) is not None:
        try:
            values = list(infer_input.as_numpy().reshape(-1))
        except Exception as exc:
            raise BadRequestError(
                f"input {name!r}: binary data does not match shape {shape}: {exc}"
            ) from None
    else:
        values = _flatten(infer_input.data, name)
    if len(values) != shape[0]:
        raise BadRequestError(
            f"input {name!r} has shape {shape} but {len(values)} values; they must agree"
        )
    return values, shape[0]


def _flatten(data: Any, name: str) -> list[Any]:
    if not isinstance(data, list):
        raise BadRequestError(f"input {name!r}: 'data' must be a list of strings")
    out: list[Any] = []
    for item in data:
        if isinstance(item, list):
            out.extend(_flatten(item, name))
        else:
            out.append(item)
    return out


def texts_from_v2(request: Any, limits: Limits) -> TextBatch:
    """The texts of a kserve ``InferRequest`` (inputs ``text`` and optional ``text_pair``).

    Raises:
        BadRequestError: Unknown, repeated or missing inputs, wrong datatype or shape, bad text.
        PayloadTooLargeError: More than ``limits.max_texts`` texts.
    """
    inputs: dict[str, Any] = {}
    for infer_input in request.inputs or []:
        if infer_input.name not in (TEXT_INPUT, PAIR_INPUT):
            raise BadRequestError(
                f"unknown input {infer_input.name!r}; the model takes {TEXT_INPUT!r} and "
                f"optionally {PAIR_INPUT!r}"
            )
        if infer_input.name in inputs:
            raise BadRequestError(f"input {infer_input.name!r} given twice")
        inputs[infer_input.name] = infer_input
    if TEXT_INPUT not in inputs:
        raise BadRequestError(f"missing input {TEXT_INPUT!r} (BYTES, shape [n])")
    values, n = _v2_values(inputs[TEXT_INPUT])
    _count(n, limits)
    texts = check_texts(values, TEXT_INPUT, limits)
    if PAIR_INPUT not in inputs:
        return TextBatch([(t, None) for t in texts])
    pair_values, m = _v2_values(inputs[PAIR_INPUT])
    if m != n:
        raise BadRequestError(
            f"input {PAIR_INPUT!r} has {m} texts, {TEXT_INPUT!r} {n}; expected equal"
        )
    seconds = check_texts(pair_values, PAIR_INPUT, limits)
    return TextBatch(list(zip(texts, seconds, strict=True)))


def requested_outputs(request: Any) -> tuple[str, ...]:
    """Names of the outputs a v2 request asks for (default :data:`DEFAULT_OUTPUTS`).

    Raises:
        BadRequestError: On an output the model does not have.
    """
    names = [o.name for o in (request.request_outputs or [])]
    unknown = sorted(set(names) - set(ALL_OUTPUTS))
    if unknown:
        raise BadRequestError(f"unknown output(s) {unknown}; the model has {list(ALL_OUTPUTS)}")
    return tuple(dict.fromkeys(names)) or DEFAULT_OUTPUTS


def _v1_instance(item: Any, i: int) -> tuple[Any, Any]:
    if isinstance(item, str):
        return item, None
    if isinstance(item, list) and len(item) == 2:
        return item[0], item[1]
    if isinstance(item, Mapping):
        unknown = sorted(set(item) - {TEXT_INPUT, PAIR_INPUT})
        if unknown or TEXT_INPUT not in item:
            raise BadRequestError(
                f"instances[{i}]: expected keys {TEXT_INPUT!r} and optionally {PAIR_INPUT!r}, "
                f"got {sorted(item)}"
            )
        return item[TEXT_INPUT], item.get(PAIR_INPUT)
    raise BadRequestError(
        f"instances[{i}] is {type(item).__name__}; expected a string, a [text, text_pair] "
        f"list or an object with {TEXT_INPUT!r}"
    )


def texts_from_v1(body: Any, limits: Limits) -> tuple[TextBatch, bool]:
    """The texts of a v1 ``{"instances": [...]}`` body and whether it asks for logits.

    Raises:
        BadRequestError: Not an object, unknown keys, bad instances, a mix of texts and pairs.
        PayloadTooLargeError: More than ``limits.max_texts`` instances.
    """
    if not isinstance(body, Mapping):
        raise BadRequestError(f"expected a JSON object with 'instances', got {type(body).__name__}")
    unknown = sorted(set(body) - set(V1_KEYS))
    if unknown:
        raise BadRequestError(f"unknown field(s) {unknown}; expected {list(V1_KEYS)}")
    instances = body.get("instances")
    if not isinstance(instances, list):
        raise BadRequestError("field 'instances' must be a list of texts")
    want_logits = body.get("return_logits", False)
    if not isinstance(want_logits, bool):
        raise BadRequestError("field 'return_logits' must be true or false")
    _count(len(instances), limits)
    raw = [_v1_instance(item, i) for i, item in enumerate(instances)]
    firsts = check_texts([a for a, _ in raw], "instances[].text", limits)
    has_pair = [b is not None for _, b in raw]
    if any(has_pair) and not all(has_pair):
        raise BadRequestError(
            "instances mix single texts and pairs; send them in separate requests"
        )
    if not any(has_pair):
        return TextBatch([(a, None) for a in firsts]), want_logits
    seconds = check_texts([b for _, b in raw], "instances[].text_pair", limits)
    return TextBatch(list(zip(firsts, seconds, strict=True))), want_logits


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32 (shifted by the row max: no overflow)."""
    z = logits.astype(np.float32) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)  # type: ignore[no-any-return]


def predicted_labels(logits: np.ndarray, labels: Sequence[str]) -> list[str]:
    """The label string of each row's largest logit."""
    return [labels[i] for i in logits.argmax(axis=-1)]


def v1_predictions(
    logits: np.ndarray, labels: Sequence[str], want_logits: bool
) -> dict[str, list[dict[str, Any]]]:
    """The v1 response body for ``logits`` ``[n, k]``."""
    probs = softmax(logits)
    out = []
    for row, p in zip(logits, probs, strict=True):
        item: dict[str, Any] = {
            LABEL_OUTPUT: labels[int(row.argmax())],
            PROBS_OUTPUT: {label: _finite(v) for label, v in zip(labels, p, strict=True)},
        }
        if want_logits:
            item[LOGITS_OUTPUT] = [_finite(v) for v in row]
        out.append(item)
    return {"predictions": out}


def _finite(value: Any) -> float:
    """A JSON-safe float (NaN/inf from a broken model would make invalid JSON)."""
    v = float(value)
    return v if math.isfinite(v) else 0.0


def v2_outputs(
    logits: np.ndarray, labels: Sequence[str], names: Sequence[str]
) -> list[tuple[str, str, list[int], Any]]:
    """``(name, datatype, shape, numpy data)`` of each requested v2 output, in order."""
    n, k = logits.shape
    out = []
    for name in names:
        if name == LABEL_OUTPUT:
            values = np.array(predicted_labels(logits, labels), dtype=np.object_)
            out.append((name, "BYTES", [n], values))
        elif name == PROBS_OUTPUT:
            out.append((name, "FP32", [n, k], softmax(logits)))
        else:
            out.append((name, "FP32", [n, k], logits.astype(np.float32)))
    return out


_KINDS: dict[type, str] = {list: "a list", str: "a string"}


def _field(obj: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind):
        shown = "nothing" if key not in obj else f"{type(value).__name__} {str(value)[:40]!r}"
        raise BadRequestError(f"{where}: field {key!r} must be {_KINDS[kind]}, got {shown}")
    return value


def v2_request(body: Any, model_name: str) -> Any:
    """A kserve ``InferRequest`` from a decoded OIP v2 JSON body, its structure checked.

    The SDK's own route checks the same structure with pydantic (``InferenceRequest``) before
    building the same object; this does it in plain Python (the server's hot path).

    Raises:
        BadRequestError: Naming the field that is missing or of the wrong type.
    """
    from ppminilm.compat.kserve import kserve

    if not isinstance(body, Mapping):
        raise BadRequestError(f"expected a JSON object with 'inputs', got {type(body).__name__}")
    inputs = _field(body, "inputs", list, "request")
    infer_inputs = []
    for i, item in enumerate(inputs):
        where = f"inputs[{i}]"
        if not isinstance(item, Mapping):
            raise BadRequestError(f"{where} must be an object with name, shape, datatype, data")
        shape = _field(item, "shape", list, where)
        if not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            raise BadRequestError(f"{where}: field 'shape' must be a list of integers")
        parameters = item.get("parameters")
        if parameters is not None and not isinstance(parameters, Mapping):
            raise BadRequestError(f"{where}: field 'parameters' must be an object")
        infer_inputs.append(
            kserve.InferInput(
                name=_field(item, "name", str, where),
                shape=shape,
                datatype=_field(item, "datatype", str, where),
                data=_field(item, "data", list, where),
                parameters=dict(parameters or {}),
            )
        )
    outputs = body.get("outputs")
    requested = None
    if outputs is not None:
        if not isinstance(outputs, list) or not all(isinstance(o, Mapping) for o in outputs):
            raise BadRequestError("request: field 'outputs' must be a list of {\"name\": ...}")
        requested = [
            kserve.protocol.infer_type.RequestedOutput(
                name=_field(o, "name", str, f"outputs[{j}]"), parameters=o.get("parameters") or {}
            )
            for j, o in enumerate(outputs)
        ]
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequestError("request: field 'id' must be a string")
    parameters = body.get("parameters")
    if parameters is not None and not isinstance(parameters, Mapping):
        raise BadRequestError("request: field 'parameters' must be an object")
    return kserve.InferRequest(
        model_name=model_name,
        infer_inputs=infer_inputs,
        request_id=request_id,
        parameters=dict(parameters) if parameters is not None else None,
        request_outputs=requested,
    )
