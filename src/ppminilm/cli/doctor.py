"""``ppminilm doctor``: does every library paddle dlopens resolve in this image (no GPU needed)?"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from ppminilm.errors import EXIT_DEVICE

logger = logging.getLogger("ppminilm.doctor")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``doctor``."""
    from ppminilm.cli._common import HelpFormatter

    parser = subparsers.add_parser(
        "doctor",
        formatter_class=HelpFormatter,
        help="check that the libraries paddle dlopens resolve (image check, no GPU needed)",
        description=(
            "Resolve each library paddle dlopens by its unversioned name (libcudnn.so, "
            "libcublas.so, libnvinfer.so...) and what it needs, as the dynamic loader would; "
            f"exit {EXIT_DEVICE} naming the missing ones."
        ),
    )
    parser.add_argument(
        "--profile",
        default=os.environ.get("PPMINILM_IMAGE", "cpu"),
        help="cpu, gpu-train or gpu-infer; the default is $PPMINILM_IMAGE (set in each image)",
    )
    parser.add_argument("--root", type=Path, default=Path("/"), help="root file system to check")
    parser.add_argument(
        "--ld-library-path",
        default=None,
        help="LD_LIBRARY_PATH the checked process has (unset: this one's on /, none otherwise)",
    )
    parser.add_argument("--no-dlopen", action="store_true", help="resolve only, never dlopen")
    parser.add_argument(
        "--make-links",
        action="store_true",
        help="only create the missing unversioned links and their ld.so.conf (image build, as"
        " root); then run ldconfig and the check",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    from ppminilm.cluster import doctor

    if args.make_links:
        # No check here: dlopen of what the links need goes through ld.so.cache, which only
        # ldconfig (run next by the image build) brings up to date.
        for line in doctor.make_links(args.profile, args.root):
            logger.info("linked %s", line)
        return 0
    ld_path = None if args.ld_library_path is None else args.ld_library_path.split(":")
    report = doctor.check(
        args.profile, args.root, ld_library_path=ld_path, dlopen=False if args.no_dlopen else None
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else doctor.format_report(report))
    if not report.ok:
        names = ", ".join(dict.fromkeys(c.name for c in report.failures))
        logger.error("%s: missing or broken: %s", args.profile, names)
        return EXIT_DEVICE
    return 0
