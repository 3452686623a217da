"""``ppminilm model``: architecture accounting."""

from __future__ import annotations

import argparse
import json

from ppminilm.cli._common import HelpFormatter
from ppminilm.config import ModelArch
from ppminilm.modeling.accounting import count_flops, count_params, format_count


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``model count``."""
    parser = subparsers.add_parser(
        "model", help="model architecture tools", formatter_class=HelpFormatter
    )
    sub = parser.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    count = sub.add_parser(
        "count",
        help="parameters and FLOPs (seq 128) of an architecture",
        formatter_class=HelpFormatter,
    )
    count.add_argument(
        "--layers", type=int, nargs="+", default=[12, 6, 6], help="layers of each model"
    )
    count.add_argument(
        "--hidden", type=int, nargs="+", default=[768], help="hidden size (one for all, or each)"
    )
    count.add_argument(
        "--width",
        type=float,
        nargs="+",
        default=[1.0, 1.0, 0.75],
        help="share of heads and FFN kept (one for all, or each)",
    )
    count.add_argument("--heads", type=int, default=0, help="0 = hidden / 64")
    count.add_argument("--intermediate", type=int, default=0, help="0 = 4 x hidden")
    count.add_argument("--vocab-size", type=int, default=21128, help="vocabulary size")
    count.add_argument("--seq-len", type=int, default=128, help="tokens per sequence (FLOPs)")
    count.add_argument("--json", action="store_true", help="print JSON lines")
    count.set_defaults(func=_count)


def _broadcast(values: list, n: int, name: str) -> list:
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise ValueError(f"--{name} has {len(values)} values; give 1 or {n}")
    return values


def _count(args: argparse.Namespace) -> int:
    n = max(len(args.layers), len(args.hidden), len(args.width))
    layers = _broadcast(args.layers, n, "layers")
    hidden = _broadcast(args.hidden, n, "hidden")
    widths = _broadcast(args.width, n, "width")
    header = f"{'model':<22}{'params':>14}{'':>8}{'FLOPs':>16}{'':>8}"
    if not args.json:
        print(header)
    for L, H, w in zip(layers, hidden, widths, strict=True):
        arch = ModelArch(
            num_layers=L,
            hidden_size=H,
            num_heads=args.heads or max(H // 64, 1),
            intermediate_size=args.intermediate or 4 * H,
            vocab_size=args.vocab_size,
            width=w,
        )
        params, flops = count_params(arch), count_flops(arch, args.seq_len)
        name = f"{L}L-{H}H" + (f" width {w:g}" if w < 1 else "")
        if args.json:
            print(json.dumps({"model": name, "params": params, "flops": flops}))
        else:
            print(
                f"{name:<22}{params:>14,}{format_count(params, 'M'):>8}"
                f"{flops:>16,}{format_count(flops, 'B'):>8}"
            )
    return 0
