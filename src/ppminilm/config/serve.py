"""The ``serve`` stage: the model server's settings and the InferenceService it is deployed as.

One record for both, because the InferenceService runs the same server: the pipeline's
``serve`` step writes these values into the predictor's arguments, and ``ppminilm serve``
reads them from flags. Defaults suit one CPU replica; profiles change nothing yet.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from ppminilm.config.base import StageConfig, _check_choice, _check_positive
from ppminilm.config.stages import ENGINES
from ppminilm.errors import ConfigError

#: KServe's HTTP port (the ServingRuntime's containerPort; ``ppminilm serve`` defaults to it).
DEFAULT_HTTP_PORT = 8080
#: What a request may carry by default: 1 MiB of JSON.
DEFAULT_MAX_PAYLOAD_BYTES = 1 << 20


@dataclasses.dataclass
class ServeConfig(StageConfig):
    """Model server and InferenceService settings.

    Attributes:
        host: Address the HTTP (and gRPC) server binds. ``127.0.0.1`` locally; the
            ServingRuntime passes ``0.0.0.0`` (the pod's network is the boundary there).
        port: HTTP port (0: any free port, reported in the log).
        grpc_port: gRPC (OIP v2) port, bound on ``host``; 0 turns gRPC off (the default:
            the SDK would open it on ``[::]:8081``).
        model_name: Name in the URL paths (default: the model's task, else ``ppminilm``).
        engine: Engine to run (default: the one ``serving.json`` names).
        device: ``cpu`` or ``gpu`` (Paddle with TensorRT, on the T4 pool).
        num_threads: Engine math threads.
        max_batch_size: Texts run together at most (the batching queue's batch size).
        max_wait_ms: How long the first text of a batch waits for others to join it.
        max_queue_texts: Texts waiting at most; a request that would exceed it gets 503.
        max_request_texts: Texts one request may carry (more: 413).
        max_payload_bytes: Request body size limit (more: 413).
        max_text_chars: Characters one text may have (more: 400). Texts within it but over
            the model's ``max_seq_len`` tokens are truncated, and the response says which.
        grace_period_s: On SIGTERM, how long in-flight requests may take to finish.
        min_replicas: InferenceService predictor replicas at least (0: scale to zero).
        max_replicas: ... and at most.
        scale_target: Concurrent requests per replica the autoscaler aims for.
        timeout_s: Predictor request timeout on the cluster.
    """

    stage: ClassVar[str] = "serve"

    host: str = "127.0.0.1"
    port: int = DEFAULT_HTTP_PORT
    grpc_port: int = 0
    model_name: str = ""
    engine: str = ""
    device: str = "cpu"
    num_threads: int = 2
    max_batch_size: int = 32
    max_wait_ms: float = 5.0
    max_queue_texts: int = 1024
    max_request_texts: int = 64
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    max_text_chars: int = 8192
    grace_period_s: int = 30
    min_replicas: int = 1
    max_replicas: int = 2
    scale_target: int = 16
    timeout_s: int = 60

    def validate(self) -> None:
        name = type(self).__name__
        if not self.host:
            raise ConfigError(f"{name}.host must name an address, e.g. '127.0.0.1'")
        for field in ("port", "grpc_port"):
            value = getattr(self, field)
            if not 0 <= value <= 65535:
                raise ConfigError(f"{name}.{field}={value} must be in [0, 65535]")
        if self.engine:
            _check_choice(name, "engine", self.engine, ENGINES)
        _check_choice(name, "device", self.device, ("cpu", "gpu"))
        if self.device == "gpu" and self.engine not in ("", "paddle"):
            raise ConfigError(f"{name}.engine={self.engine!r} runs on device='cpu' only")
        for field in (
            "num_threads",
            "max_batch_size",
            "max_queue_texts",
            "max_request_texts",
            "max_payload_bytes",
            "max_text_chars",
            "max_replicas",
            "scale_target",
            "timeout_s",
        ):
            _check_positive(name, field, getattr(self, field))
        for field in ("max_wait_ms", "grace_period_s", "min_replicas"):
            _check_positive(name, field, getattr(self, field), allow_zero=True)
        if self.min_replicas > self.max_replicas:
            raise ConfigError(
                f"{name}.min_replicas={self.min_replicas} > max_replicas={self.max_replicas}"
            )
        if self.max_queue_texts < self.max_request_texts:
            raise ConfigError(
                f"{name}.max_queue_texts={self.max_queue_texts} must hold one whole request "
                f"(max_request_texts={self.max_request_texts})"
            )
