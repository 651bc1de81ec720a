"""An open-loop HTTP load generator: requests sent when they are due, whatever the earlier ones are doing.

A closed loop (N clients, each waiting for its answer before sending again) slows down with the server it
measures and hides queueing; here request i is due at ``t0 + offsets[i]`` and its latency runs from that moment,
so a server that falls behind shows it in the tail. HTTP/1.1 keep-alive connections are written and read directly
on asyncio streams, because the generator shares the machine's cores with the server: a full HTTP client library
costs several times more CPU per request than the server's cheapest answers.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

MAX_CONNECTIONS = 256  # connections opened at most; a request due when all are busy waits for one
IDLE_SECONDS = 4.0  # a kept-alive connection idle longer is not reused: uvicorn closes them after 5 s


@dataclass(frozen=True)
class Request:
    label: str  # what the figures are grouped by, e.g. the endpoint
    method: str
    path: str
    body: Any = None  # JSON-serialisable, or None
    headers: tuple[tuple[str, str], ...] = ()

    def encoded(self, host: str) -> bytes:
        payload = b"" if self.body is None else json.dumps(self.body).encode()
        lines = [f"{self.method} {self.path} HTTP/1.1", f"Host: {host}", "Connection: keep-alive",
                 *(f"{name}: {value}" for name, value in self.headers)]
        if self.body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


@dataclass(frozen=True)
class Result:
    label: str
    due: float  # perf_counter time the request was due
    latency: float  # seconds from due to the last byte of the answer
    status: int  # HTTP status; 0 when the connection failed
    body: bytes


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.idle_since = time.perf_counter()

    @property
    def stale(self) -> bool:
        """Closed by the server, or idle so long that it may close it while a request is on its way."""
        return self.reader.at_eof() or time.perf_counter() - self.idle_since > IDLE_SECONDS

    async def exchange(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                body += chunk[:-2]
        else:
            body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, body

    def close(self) -> None:
        self.writer.close()


async def _run(host: str, port: int, requests: list[Request], offsets: list[float], keep_body: bool
               ) -> list[Result]:
    idle: list[_Connection] = []
    opened = 0
    available = asyncio.Condition()
    results: list[Result | None] = [None] * len(requests)
    host_header = f"{host}:{port}"
    encoded = [r.encoded(host_header) for r in requests]  # before the clock starts

    async def connection() -> _Connection:
        nonlocal opened
        async with available:
            while not idle and opened >= MAX_CONNECTIONS:
                await available.wait()
            while idle:
                conn = idle.pop()
                if not conn.stale:
                    return conn
                conn.close()
                opened -= 1
            opened += 1
        return _Connection(*await asyncio.open_connection(host, port))

    async def send(i: int, due: float) -> None:
        nonlocal opened
        status, body, conn = 0, b"", None
        try:
            conn = await connection()
            status, body = await conn.exchange(encoded[i])
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            status = 0
        latency = time.perf_counter() - due
        results[i] = Result(requests[i].label, due, latency, status, body if keep_body or status >= 400 else b"")
        async with available:
            if conn is not None and status and not conn.writer.is_closing():
                conn.idle_since = time.perf_counter()
                idle.append(conn)
            else:
                opened -= 1
                if conn is not None:
                    conn.close()
            available.notify()

    tasks = []
    start = time.perf_counter() + 0.05
    for i, offset in enumerate(offsets):
        due = start + offset
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(i, due)))
    await asyncio.gather(*tasks)
    for conn in idle:
        conn.close()
    return [r for r in results if r is not None]


def open_loop(host: str, port: int, requests: list[Request], offsets: list[float], keep_body: bool = False
              ) -> list[Result]:
    """Send ``requests[i]`` at ``offsets[i]`` seconds from now (sorted); every answer, in request order."""
    if len(requests) != len(offsets):
        raise ValueError(f"{len(requests)} requests but {len(offsets)} offsets")
    return asyncio.run(_run(host, port, requests, offsets, keep_body))


def evenly(n: int, rate: float) -> list[float]:
    """``n`` offsets ``rate`` per second apart."""
    return [i / rate for i in range(n)]
