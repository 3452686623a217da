"""A small HTTP/1.1 keep-alive client on asyncio streams, for the load test.

The load generator shares the machine with the server, so every microsecond it spends is one
the server does not get: a request here is one ``write`` and a few ``readline`` calls, no
library layers. Loopback (127.0.0.1) only.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

#: The only host the load test talks to.
LOOPBACK = "127.0.0.1"


@dataclass
class Reply:
    """One response: status, lower-cased headers, body, seconds from send to last byte."""

    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float


@dataclass
class Connection:
    """A keep-alive connection to ``127.0.0.1:port`` that reconnects when the server closes."""

    port: int
    timeout_s: float = 60.0
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    reconnects: int = field(default=0)

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.reader is None or self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(LOOPBACK, self.port)
            self.reconnects += 1
        return self.reader, self.writer

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        content_type: str = "application/json",
    ) -> Reply:
        """Send one request and read the whole response.

        Raises:
            ConnectionError: If the server closed the connection before answering.
            TimeoutError: After ``timeout_s``.
        """
        reader, writer = await self._open()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {LOOPBACK}:{self.port}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        started = time.perf_counter()
        try:
            writer.write(head.encode("ascii") + body)
            await writer.drain()
            reply = await asyncio.wait_for(self._read(reader), self.timeout_s)
        except (ConnectionError, OSError, asyncio.IncompleteReadError) as exc:
            await self.close()
            raise ConnectionError(f"{method} {path}: connection lost ({exc!r})") from exc
        reply.seconds = time.perf_counter() - started
        if reply.headers.get("connection", "").lower() == "close":
            await self.close()
        return reply

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> Reply:
        status_line = await reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split(b" ", 2)[1])
        headers: dict[str, str] = {}
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = await reader.readexactly(length) if length else b""
        return Reply(status, headers, body, 0.0)
