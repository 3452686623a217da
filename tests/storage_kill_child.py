"""Child process of the S3 kill tests: ``ppminilm storage cp`` that signals itself mid-way.

Usage: ``python storage_kill_child.py POINT SIGNAL SRC DST``. The copy runs through the real
CLI against the real (moto) S3 server; the only addition is a hook that sends ``SIGNAL``
(``SIGKILL`` or ``SIGTERM``) to this process at ``POINT``:

* ``part``: right after the first multipart part reached the server (an upload is open);
* ``file:N``: right after the N-th file of a directory was stored (the last one: every file
  is stored, the manifest not yet switched);
* ``switched``: right after the manifest switched to the new version (still in staging);
* ``copied``: right after the first file was copied out of staging to its own key;
* ``final``: right after the final manifest, before the cleanup;
* ``none``: no signal (a normal run).

A hook counts calls of a method and, at the wanted one, calls the method and then
``os.kill(os.getpid(), SIGNAL)``; the method itself runs unchanged.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any


def _after(owner: Any, name: str, nth: int, signum: int) -> None:
    """Make the ``nth`` call of ``owner.name`` signal this process once it returned."""
    original: Callable[..., Any] = getattr(owner, name)
    calls = {"n": 0}

    def hooked(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == nth:
            os.kill(os.getpid(), signum)
        return result

    setattr(owner, name, hooked)


def main() -> int:
    point, sig, src, dst = sys.argv[1:5]
    signum = int(getattr(signal, sig))
    import minio

    from ppminilm.storage import publish, s3

    if point == "part":
        _after(minio.Minio, "_upload_part", 1, signum)
    elif point.startswith("file:"):
        _after(s3.S3Store, "put_file", int(point.split(":", 1)[1]), signum)
    elif point == "switched":
        _after(publish, "_write_manifest", 1, signum)
    elif point == "copied":
        _after(s3.S3Store, "copy", 1, signum)
    elif point == "final":
        _after(publish, "_write_manifest", 2, signum)
    elif point != "none":
        raise SystemExit(f"unknown point {point!r}")
    from ppminilm.cli import main as cli

    return cli(["storage", "cp", src, dst])


if __name__ == "__main__":
    raise SystemExit(main())
