"""What a request can do wrong, as HTTP statuses; every one is answered ``{"error": "..."}``.

The body is the Open Inference Protocol's error object. The server logs each at INFO, one
line, and keeps serving; only a failure of the engine itself (a bug) is a 500 with a traceback
in the log.
"""

from __future__ import annotations

from http import HTTPStatus


class RequestError(Exception):
    """A request the server refuses, with the status it is answered with."""

    status: int = HTTPStatus.BAD_REQUEST

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequestError(RequestError):
    """400: wrong shape, wrong type, empty or over-long text, not JSON, not UTF-8."""

    status = HTTPStatus.BAD_REQUEST


class PayloadTooLargeError(RequestError):
    """413: a body over ``max_payload_bytes``, or more texts than ``max_request_texts``."""

    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class OverloadedError(RequestError):
    """503: the batching queue holds ``max_queue_texts`` already; retry later."""

    status = HTTPStatus.SERVICE_UNAVAILABLE


class ShuttingDownError(RequestError):
    """503: the server got SIGTERM and takes no new work (in-flight requests finish)."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
