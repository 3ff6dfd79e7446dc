"""A small HTTP/1.1 load generator for loopback benchmarks (its own process, uvloop, raw
sockets: ~25 us of client CPU a request, so it does not become the bottleneck it measures).

Open loop (``rate``): request k is due at ``start + k / rate`` whatever the answers; it goes
out on an idle keep-alive connection (a new one is opened when none is idle, up to
``max_connections``), and its latency counts from when it was *due*, so a stalled server shows
in the tail instead of slowing the generator down (no coordinated omission). Closed loop
(``rate`` = 0): ``connections`` clients each send the next request when the last one is
answered; that measures the most a server does, not its latency at a given rate.

Prints one JSON line: sent, ok (2xx), errors, seconds, achieved requests/s, p50/p95/p99/max ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import numpy as np


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        return cls(*await asyncio.open_connection(host, port))

    async def request(self, payload: bytes) -> int:
        """Send one prepared request and read its response; returns the status."""
        self.writer.write(payload)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await self.reader.readexactly(length)
        return status


def prepare(host: str, port: int, path: str, bodies: list[bytes], headers: dict) -> list[bytes]:
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return [
        (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"{extra}Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
        for body in bodies
    ]


async def open_loop(host, port, payloads, rate, seconds, max_connections) -> dict:
    idle: list[Connection] = [await Connection.open(host, port) for _ in range(16)]
    opened = len(idle)
    latencies: list[float] = []
    statuses: list[int] = []
    pending: set[asyncio.Task] = set()
    waiting: asyncio.Queue = asyncio.Queue()  # due requests with no connection free yet
    total = int(rate * seconds)
    start = time.perf_counter() + 0.05

    async def run(conn: Connection, k: int, due: float) -> None:
        nonlocal opened
        try:
            statuses.append(await conn.request(payloads[k % len(payloads)]))
            latencies.append(time.perf_counter() - due)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            statuses.append(599)
            latencies.append(time.perf_counter() - due)
            conn.writer.close()
            conn = await Connection.open(host, port)
        if not waiting.empty():
            k2, due2 = waiting.get_nowait()
            _spawn(conn, k2, due2)
        else:
            idle.append(conn)

    def _spawn(conn: Connection, k: int, due: float) -> None:
        task = asyncio.ensure_future(run(conn, k, due))
        pending.add(task)
        task.add_done_callback(pending.discard)

    for k in range(total):
        due = start + k / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if idle:
            _spawn(idle.pop(), k, due)
        elif opened < max_connections:
            opened += 1
            _spawn(await Connection.open(host, port), k, due)
        else:
            waiting.put_nowait((k, due))
    deadline = time.perf_counter() + 30
    while (pending or not waiting.empty()) and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - start
    return summary(latencies, statuses, elapsed, total, opened)


async def closed_loop(host, port, payloads, connections, seconds) -> dict:
    latencies: list[float] = []
    statuses: list[int] = []
    stop = time.perf_counter() + seconds

    async def client(offset: int) -> None:
        conn = await Connection.open(host, port)
        k = offset
        while time.perf_counter() < stop:
            began = time.perf_counter()
            statuses.append(await conn.request(payloads[k % len(payloads)]))
            latencies.append(time.perf_counter() - began)
            k += connections
        conn.writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(connections)))
    return summary(latencies, statuses, time.perf_counter() - began, len(statuses), connections)


def summary(latencies, statuses, elapsed, sent, connections) -> dict:
    ms = np.array(latencies) * 1e3 if latencies else np.array([np.nan])
    ok = sum(200 <= s < 300 for s in statuses)
    counts = {str(s): statuses.count(s) for s in sorted(set(statuses)) if not 200 <= s < 300}
    return {
        "sent": sent,
        "answered": len(statuses),
        "ok": ok,
        "errors": len(statuses) - ok,
        "error_statuses": counts,
        "seconds": round(elapsed, 3),
        "rps": round(len(statuses) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p95_ms": round(float(np.percentile(ms, 95)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "max_ms": round(float(ms.max()), 3),
        "connections": connections,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--path", default="/score")
    parser.add_argument("--bodies", required=True, help="a JSON file: a list of request bodies")
    parser.add_argument("--header", action="append", default=[], help="Name: value")
    parser.add_argument("--rate", type=float, default=0, help="requests/s (0: closed loop)")
    parser.add_argument("--connections", type=int, default=32, help="closed loop clients")
    parser.add_argument("--max-connections", type=int, default=512)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    import uvloop

    with open(args.bodies) as f:
        bodies = [json.dumps(b).encode() for b in json.load(f)]
    headers = dict(h.split(": ", 1) for h in args.header)
    payloads = prepare(args.host, args.port, args.path, bodies, headers)
    if args.rate:
        coroutine = open_loop(
            args.host, args.port, payloads, args.rate, args.seconds, args.max_connections
        )
    else:
        coroutine = closed_loop(args.host, args.port, payloads, args.connections, args.seconds)
    print(json.dumps(uvloop.run(coroutine)))


if __name__ == "__main__":
    main()
