"""The inference log: every decision appended to a Delta table, in batches, off the request path.

A request appends one ``LogRow`` to an in-memory queue (~1 us); a background thread converts
the queue to Arrow and, every ``flush_s`` seconds, hands it to a writer process, which spools it
to local disk and commits the spool to Delta every ``commit_s`` seconds as one append,
partitioned by ``scored_date`` (``serving/log_writer.py``). The
row holds what drift monitoring and realized-performance reports need: the model input vector
(one column per feature, named as in the training set), scores, decision, model versions,
feature source and latency. The customer is a keyed hash; no card data, device id or other
PII is written. Shadow scores (the challenger's) are computed here, in the
thread, after the response has gone: they are logged, never acted on.

When the table cannot be written, rows wait for the next attempt (up to ``max_pending``, then
the oldest are dropped and counted in ``risk_inference_log_rows{outcome="dropped"}``).
"""

from __future__ import annotations

import collections
import hashlib
import logging
import operator
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from riskcore import settings
from riskcore.settings import PROJECT_ROOT
from serving import metrics
from serving.log_writer import LENGTH

log = logging.getLogger("serving.inference_log")


@dataclass(slots=True)
class LogRow:
    """One decision, as cheap to record as possible: everything written is computed on the
    request path in a microsecond or two (times as integer microseconds, the customer as a
    keyed hash), so a flush is a few C calls and the write; the shadow scores are filled in
    by the log's thread."""

    transaction_id: str
    customer_hash: str
    event_ts: int  # microseconds since the epoch (UTC)
    scored_at: int
    decision: str
    fraud_score: float
    default_score: float | None
    fraud_model: str
    default_model: str | None
    model_kind: str  # behavioural | transaction_only
    feature_set_version: str | None
    features_as_of: int | None
    feature_source: str
    lookup_ms: float
    inference_ms: float
    total_ms: float
    # Which model decided: champion, or canary (for the canary's share of customers).
    fraud_role: str = "champion"
    default_role: str | None = None
    # Each target's own decision by its thresholds (``decision`` is the most severe of them).
    fraud_decision: str | None = None
    default_decision: str | None = None
    # A would-be decline approved by the random holdout, and its weight (1 / the share held out:
    # how many would-be declines it stands for).
    holdout: bool = False
    holdout_weight: float | None = None
    shadow_fraud_score: float | None = None
    shadow_default_score: float | None = None
    shadow_fraud_model: str | None = None
    shadow_default_model: str | None = None
    # Not columns as such: the fraud model's input (one column per name), and what the shadow
    # models need to build theirs (the transaction and the records; in memory only).
    feature_names: tuple[str, ...] = ()
    vector: np.ndarray | None = None
    shadow_inputs: tuple | None = None


_NOT_SCALARS = {"feature_names", "vector", "shadow_inputs"}
_SCALARS = [f.name for f in fields(LogRow) if f.name not in _NOT_SCALARS]
_ROW_SCALARS = operator.attrgetter(*_SCALARS)
_TIMESTAMP = pa.timestamp("us", "UTC")
_TYPES = {
    "event_ts": pa.int64(),
    "scored_at": pa.int64(),
    "features_as_of": pa.int64(),
    "fraud_score": pa.float64(),
    "default_score": pa.float64(),
    "lookup_ms": pa.float32(),
    "inference_ms": pa.float32(),
    "total_ms": pa.float32(),
    "shadow_fraud_score": pa.float64(),
    "holdout": pa.bool_(),
    "holdout_weight": pa.float64(),
    "shadow_default_score": pa.float64(),
}


class CustomerHasher:
    """The keyed hash that stands for a customer in the log: keyed BLAKE2b (a MAC, ~0.5 us),
    joinable with itself, not reversible without the key."""

    def __init__(self, key: bytes):
        self.key = key if len(key) <= 64 else hashlib.blake2b(key).digest()

    def __call__(self, customer_id: str) -> str:
        return hashlib.blake2b(customer_id.encode(), key=self.key, digest_size=16).hexdigest()


def to_table(rows: list[LogRow]) -> pa.Table:
    """Scalars as typed columns; feature vectors stacked per feature list (a behavioural and a
    transaction-only model read different ones) into float64 columns, null where not read.
    Column-wise C calls only: the serving thread keeps the GIL."""
    values = zip(*map(_ROW_SCALARS, rows), strict=True)
    columns = {
        name: pa.array(column, _TYPES.get(name, pa.string()))
        for name, column in zip(_SCALARS, values, strict=True)
    }
    for name in ("event_ts", "scored_at", "features_as_of"):
        columns[name] = columns[name].cast(_TIMESTAMP)
    groups: dict[tuple[str, ...], list[int]] = collections.defaultdict(list)
    for i, row in enumerate(rows):
        groups[row.feature_names].append(i)
    names = list(dict.fromkeys(n for group in groups for n in group))
    matrix = np.full((len(rows), len(names)), np.nan)
    position = {n: j for j, n in enumerate(names)}
    for group, indexes in groups.items():
        if group:
            matrix[np.ix_(indexes, [position[n] for n in group])] = np.vstack(
                [rows[i].vector for i in indexes]
            )
    for j, name in enumerate(names):
        columns[name] = pa.array(matrix[:, j], mask=np.isnan(matrix[:, j]))
    table = pa.table(columns)
    return table.append_column("scored_date", pc.cast(table["scored_at"], pa.date32()))


class InferenceLog:
    """Rows are turned into Arrow slices every ``convert_s`` (small slices: each conversion
    holds the GIL for about a millisecond) and handed, every ``flush_s``, as one batch to the
    writer process (``serving/log_writer.py``), which spools it and commits its spool every
    ``commit_s`` as one Delta append. A batch stays queued until the writer acknowledges it; a
    writer that died is started again (and commits the spool the dead one left)."""

    def __init__(
        self,
        uri: str,
        *,
        flush_s: float = 2.0,
        commit_s: float = 60.0,
        spool_dir: str = "",
        convert_s: float = 0.25,
        max_pending: int = 2_000_000,
        shadow: Callable[[list[LogRow]], None] | None = None,
    ):
        self.uri = uri
        self.flush_s, self.commit_s, self.convert_s = flush_s, commit_s, convert_s
        self.spool_dir = spool_dir or str(settings.load().inference_log_spool_dir)
        self._spooled = 0  # rows the writer holds, not yet committed
        self.max_pending = max_pending
        self.shadow = shadow  # fills the rows' shadow scores before they are converted
        self._rows: collections.deque[LogRow] = collections.deque()
        self._slices: list[pa.Table] = []  # converted, not yet committed
        self._stop = threading.Event()
        self._lock = threading.Lock()  # the thread, or flush() from another thread
        self._thread: threading.Thread | None = None
        self._writer: subprocess.Popen | None = None

    def append(self, row: LogRow) -> None:
        self._rows.append(row)  # deque appends are thread-safe and O(1)

    @property
    def pending(self) -> int:
        return len(self._rows) + sum(t.num_rows for t in self._slices) + self._spooled

    def start(self) -> InferenceLog:
        self._thread = threading.Thread(target=self._run, name="inference-log", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        commit_at = time.monotonic() + self.flush_s
        while not self._stop.wait(self.convert_s):
            with self._lock:
                self._convert()
                if time.monotonic() >= commit_at:
                    self._hand_off()
                    commit_at = time.monotonic() + self.flush_s

    def close(self) -> None:
        """Stop the thread, write what is left, stop the writer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.flush()
        if self._writer is not None:
            self._writer.stdin.close()
            self._writer.wait(timeout=600)  # its last commit
            self._writer = None

    def hand_off(self) -> int:
        """Convert and hand everything queued now to the writer's spool (the thread does this
        every ``flush_s``); returns the rows handed over."""
        with self._lock:
            self._convert()
            return self._hand_off()

    def flush(self) -> int:
        """Convert and commit everything queued now, to Delta; returns the rows committed."""
        with self._lock:
            self._convert()
            self._hand_off()
            before = self._spooled  # all the writer holds, this hand-off's rows included
            try:
                self._send(None)
            except Exception as exc:
                log.error("inference log: %d rows not committed yet (%s)", self._spooled, exc)
            return before - self._spooled

    def _convert(self) -> None:
        rows = [self._rows.popleft() for _ in range(len(self._rows))]
        if not rows:
            return
        if self.shadow is not None:
            try:
                self.shadow(rows)
            except Exception:  # shadow scores are information: never block the log
                log.exception("shadow scoring failed for %d rows", len(rows))
        self._slices.append(to_table(rows))

    def _hand_off(self) -> int:
        if not self._slices:
            return 0
        table = pa.concat_tables(self._slices, promote_options="default")
        try:
            self._send(table)
        except Exception as exc:
            log.error(
                "inference log: %d rows not written to %s yet (%s)", table.num_rows, self.uri, exc
            )
            while self.pending > self.max_pending and self._slices:  # the oldest go first
                metrics.LOG_ROWS.labels("dropped").inc(self._slices.pop(0).num_rows)
            return 0
        self._slices = []
        metrics.LOG_ROWS.labels("spooled").inc(table.num_rows)  # on local disk
        return table.num_rows

    def _send(self, table: pa.Table | None) -> None:
        """One batch to the writer's spool (None: commit the spool now), and its answer."""
        if self._writer is None or self._writer.poll() is not None:
            self._spooled = 0  # a writer that died left its spool: the new one commits it
            self._writer = subprocess.Popen(
                [
                    *(sys.executable, "-m", "serving.log_writer", self.uri, self.spool_dir),
                    *(str(self.commit_s), str(self.max_pending)),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                cwd=PROJECT_ROOT,
            )
        payload = b""
        if table is not None:
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as stream:
                stream.write_table(table)
            payload = sink.getvalue()
        try:
            self._writer.stdin.write(LENGTH.pack(len(payload)))  # 0: commit now
            self._writer.stdin.write(payload)
            self._writer.stdin.flush()
            ack, spooled = self._writer.stdout.read(1), self._writer.stdout.read(LENGTH.size)
        except (BrokenPipeError, ValueError) as exc:
            raise RuntimeError("the log writer exited") from exc
        if len(spooled) == LENGTH.size:
            self._spooled = LENGTH.unpack(spooled)[0]
        if ack != b"1":
            raise RuntimeError("the log writer could not write the batch (see its stderr)")
