"""The inference log's writer: a child process of the scoring service that appends Arrow
batches to the Delta table, so Parquet encoding and commits never compete with requests for
the service's GIL (measured: in-process writes put p99 at 1,700 req/s from ~4 ms to ~250 ms).

Protocol on stdin/stdout: the parent sends a batch as an 8-byte little-endian length and an
Arrow IPC stream; the child answers one byte, ``1`` when the batch is committed, ``0`` when it
failed (the reason goes to stderr). The parent keeps a batch until it is acknowledged.
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys

import pyarrow as pa

LENGTH = struct.Struct("<Q")
CHECKPOINT_EVERY = 100


class DeltaAppender:
    """Appends to one Delta table; the handle is kept (each commit is read incrementally, not
    the whole log again) and checkpointed every ``CHECKPOINT_EVERY`` commits."""

    def __init__(self, uri: str):
        self.uri = uri
        self.table = None

    def append(self, batch: pa.Table) -> None:
        from deltalake import DeltaTable, write_deltalake
        from deltalake.exceptions import TableNotFoundError

        if self.table is None:
            with contextlib.suppress(TableNotFoundError):
                self.table = DeltaTable(self.uri)
        target = self.table if self.table is not None else self.uri
        write_deltalake(
            target, batch, mode="append", partition_by=["scored_date"], schema_mode="merge"
        )
        if self.table is None:
            self.table = DeltaTable(self.uri)
        if self.table.version() % CHECKPOINT_EVERY == 0:
            self.table.create_checkpoint()


def main(uri: str) -> None:
    with contextlib.suppress(OSError, AttributeError):
        os.nice(10)  # below the scoring service
    appender = DeltaAppender(uri)
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    while header := source.read(LENGTH.size):
        payload = source.read(LENGTH.unpack(header)[0])
        try:
            appender.append(pa.ipc.open_stream(payload).read_all())
            sink.write(b"1")
        except Exception as exc:
            print(f"inference log: batch not written to {uri}: {exc!r}", file=sys.stderr)
            sink.write(b"0")
        sink.flush()


if __name__ == "__main__":
    main(sys.argv[1])
