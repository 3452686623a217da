"""A local S3 endpoint for tests: moto's standalone server on 127.0.0.1.

Two flavours:

* ``start_s3_server()`` runs ``moto.server.ThreadedMotoServer`` in a thread of this process.
  moto accepts any access key pair here (auth is not enforced).
* ``start_auth_s3_server()`` runs the same server in a child process whose environment has
  ``INITIAL_NO_AUTH_ACTION_COUNT=0``. moto reads that variable once, when ``moto.settings`` is
  imported, into a process-wide global, so it cannot be switched on for one server inside a
  process that already runs a no-auth server. With auth enforced moto only accepts keys of IAM
  users it knows; the child creates one (with an ``s3:*`` policy) directly in its IAM backend
  before serving, and reports the key pair to the parent.

Port 0 lets the OS pick a free port; the real port is read back from the server.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

HOST = "127.0.0.1"
#: Seconds to wait for the auth-enforcing child to report its port.
CHILD_START_TIMEOUT_S = 60
#: Any key pair works on the no-auth server; these are just recognisable.
NO_AUTH_ACCESS_KEY = "ppminilm-test-access"
NO_AUTH_SECRET_KEY = "ppminilm-test-secret-do-not-print"
#: Key segment the auth server's *restricted* user may not write (failure injection: a real
#: server-side AccessDenied on PUT, e.g. in the middle of a directory upload).
FORBIDDEN_SEGMENT = "forbidden"
_ALLOW_S3 = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
_USERS = {
    "ppminilm-writer": {"Version": "2012-10-17", "Statement": [_ALLOW_S3]},
    "ppminilm-restricted": {
        "Version": "2012-10-17",
        "Statement": [
            _ALLOW_S3,
            {
                "Effect": "Deny",
                "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::*/{FORBIDDEN_SEGMENT}/*",
            },
        ],
    },
}


@dataclass
class RunningS3Server:
    """A started server: where it listens and a key pair it accepts.

    Attributes:
        endpoint: ``host:port`` (plain HTTP).
        access_key: Access key id the server accepts.
        secret_key: Matching secret key.
        restricted_keys: Auth server only: ``(access_key, secret_key)`` of a user denied
            ``s3:PutObject`` on keys containing ``/forbidden/``.
    """

    endpoint: str
    access_key: str
    secret_key: str = field(repr=False)
    restricted_keys: tuple[str, str] | None = field(default=None, repr=False)
    _stop: Any = field(default=None, repr=False)

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        if self._stop is not None:
            stop, self._stop = self._stop, None
            stop()


def start_s3_server() -> RunningS3Server:
    """Start moto's threaded server in this process on a free port, auth not enforced.

    Returns:
        The running server; call ``stop()`` when done.
    """
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address=HOST, port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return RunningS3Server(
        endpoint=f"{host}:{port}",
        access_key=NO_AUTH_ACCESS_KEY,
        secret_key=NO_AUTH_SECRET_KEY,
        _stop=server.stop,
    )


def start_auth_s3_server() -> RunningS3Server:
    """Start moto in a child process with request authentication enforced.

    Returns:
        The running server with the key pair of an IAM user allowed ``s3:*`` and that of a
        user denied writes under ``*/forbidden/``.

    Raises:
        RuntimeError: If the child does not report a port in time.
    """
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="0")
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--serve-with-auth"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        line = proc.stdout.readline()
        info = json.loads(line)
    except Exception as exc:
        proc.kill()
        proc.wait(timeout=10)
        raise RuntimeError(f"auth-enforcing moto server did not start: {line!r}") from exc

    def stop() -> None:
        assert proc.stdin is not None
        proc.stdin.close()  # the child exits when its stdin closes
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    return RunningS3Server(
        endpoint=f"{HOST}:{info['port']}",
        access_key=info["ppminilm-writer"][0],
        secret_key=info["ppminilm-writer"][1],
        restricted_keys=tuple(info["ppminilm-restricted"]),
        _stop=stop,
    )


def _serve_with_auth() -> None:
    """Child-process entry: create an IAM user, serve with auth enforced until stdin closes."""
    if os.environ.get("INITIAL_NO_AUTH_ACTION_COUNT") != "0":
        raise SystemExit("INITIAL_NO_AUTH_ACTION_COUNT=0 must be set before moto is imported")
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.iam.models import iam_backends
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no per-request lines
    iam = iam_backends[DEFAULT_ACCOUNT_ID]["aws"]
    info: dict[str, Any] = {}
    for user, policy in _USERS.items():
        iam.create_user(region_name="us-east-1", user_name=user)
        iam.put_user_policy(user, "s3", json.dumps(policy))
        key = iam.create_access_key(user)
        info[user] = [key.access_key_id, key.secret_access_key]

    server = ThreadedMotoServer(ip_address=HOST, port=0, verbose=False)
    server.start()
    info["port"] = server.get_host_and_port()[1]
    sys.stdout.write(json.dumps(info) + "\n")
    sys.stdout.flush()
    sys.stdin.read()  # block until the parent closes our stdin
    server.stop()


if __name__ == "__main__" and "--serve-with-auth" in sys.argv:
    _serve_with_auth()
