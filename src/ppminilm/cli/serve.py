"""``ppminilm serve``: the KServe model server on a deployable inference dir, locally.

Examples::

    ppminilm serve --model-dir runs/local/deployable      # http://127.0.0.1:8080
    curl -s localhost:8080/v2/models/local_reviews/infer -d \\
      '{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["很好用"]}]}'
    ppminilm serve --model-dir DIR --port 9000 --grpc-port 9001 --max-batch-size 16

Binds 127.0.0.1 unless --host says otherwise; gRPC is off unless --grpc-port is given.
SIGTERM or Ctrl-C drains: in-flight requests finish, then the command exits 0.
"""

from __future__ import annotations

import argparse
from typing import Any

from ppminilm.cli._common import HelpFormatter, add_config_flags, overrides_of
from ppminilm.config import ENGINES, ServeConfig, resolve


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``serve``."""
    parser = subparsers.add_parser(
        "serve",
        help="6  serve a deployable model (KServe SDK: OIP v2 + v1 REST, batching)",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--model-dir",
        required=True,
        help="deployable inference dir (the benchmark's 'deployable' output)",
    )
    parser.add_argument("--host", default=None, help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="HTTP port (default: 8080; 0: any)")
    parser.add_argument(
        "--grpc-port",
        type=int,
        default=None,
        help="also serve OIP gRPC on this port (default: off)",
    )
    parser.add_argument("--model-name", default=None, help="name in the URLs (default: the task)")
    parser.add_argument(
        "--engine", choices=ENGINES, default=None, help="default: the one serving.json names"
    )
    parser.add_argument("--device", choices=("cpu", "gpu"), default=None, help="default: cpu")
    parser.add_argument(
        "--threads", type=int, default=None, help="engine math threads (default: 2)"
    )
    parser.add_argument(
        "--max-batch-size", type=int, default=None, help="texts per engine call (default: 32)"
    )
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        default=None,
        help="longest wait of a batch for more requests (default: 5)",
    )
    parser.add_argument(
        "--grace-period",
        type=int,
        default=None,
        help="seconds in-flight requests get after SIGTERM (default: 30)",
    )
    add_config_flags(parser, "serve", summary=False)
    parser.set_defaults(func=_serve)


def serve_config(args: argparse.Namespace) -> ServeConfig:
    """The server's settings: defaults -> profile -> ``--config`` -> flags."""
    fields: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "grpc_port": args.grpc_port,
        "model_name": args.model_name,
        "engine": args.engine,
        "device": args.device,
        "num_threads": args.threads,
        "max_batch_size": args.max_batch_size,
        "max_wait_ms": args.max_wait_ms,
        "grace_period_s": args.grace_period,
    }
    return resolve(ServeConfig, args.profile, overrides_of(args, "serve"), **fields)


def _serve(args: argparse.Namespace) -> int:
    from ppminilm.serving import serve

    serve(args.model_dir, serve_config(args))
    return 0
