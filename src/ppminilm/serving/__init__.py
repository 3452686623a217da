"""Serving the benchmark's winner: a KServe model server and the InferenceService it runs as.

* :mod:`.model` -- :class:`TextClassifier`, a ``kserve.Model``: a deployable inference dir on
  its engine, server-side tokenization with the artifact's vocab, v2 and v1 answers.
* :mod:`.batcher` -- the bounded batching queue (max batch size, max wait, max queued).
* :mod:`.protocol` -- texts out of OIP v2 / v1 requests, labels and probabilities back.
* :mod:`.app` -- the FastAPI app (SDK routes, body limit, JSON errors) and :class:`HTTPServer`
  (uvicorn on our host, gRPC on request, SIGTERM drains); :func:`serve`.
* :mod:`.deploy` -- the InferenceService and ServingRuntime manifests (paddle- and kserve-free).
* :mod:`.errors` -- what a request can do wrong, as HTTP statuses.

Only :mod:`.deploy` and :mod:`.errors` import nothing heavy; the rest imports the kserve SDK
(``pip install -e '.[serve]'``) through :mod:`ppminilm.compat.kserve`.
"""

from ppminilm._lazy import lazy_exports

__all__ = [
    "HTTPServer",
    "TextClassifier",
    "inference_service",
    "load_model",
    "serve",
    "serving_runtime",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "HTTPServer": "app",
        "TextClassifier": "model",
        "inference_service": "deploy",
        "load_model": "app",
        "serve": "app",
        "serving_runtime": "deploy",
    },
)
