"""The inference log: every decision appended to a Delta table, in batches, off the request path.

A request appends one ``LogRow`` to an in-memory queue (~1 us); a background thread commits
the queue every ``flush_s`` seconds as one Delta append, partitioned by ``scored_date``. The
row holds what drift monitoring and realized-performance reports need: the model input vector
(one column per feature, named as in the training set), scores, decision, model versions,
feature source and latency. The customer is a keyed hash (HMAC-SHA256); no card data, device
id or other PII is written. Shadow scores (the challenger's) are computed here, in the
thread, after the response has gone: they are logged, never acted on.

When the table cannot be written, rows wait for the next attempt (up to ``max_pending``, then
the oldest are dropped and counted in ``risk_inference_log_rows{outcome="dropped"}``).
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from serving import metrics

log = logging.getLogger("serving.inference_log")


@dataclass(slots=True)
class LogRow:
    request_id: str
    transaction_id: str
    customer_hash: str
    event_ts: datetime
    scored_at: datetime
    decision: str
    fraud_score: float
    default_score: float | None
    fraud_model: str
    default_model: str | None
    model_kind: str  # behavioural | transaction_only
    feature_set_version: str | None
    features_as_of: datetime | None
    feature_source: str
    lookup_ms: float
    inference_ms: float
    total_ms: float
    shadow_fraud_score: float | None = None
    shadow_default_score: float | None = None
    shadow_fraud_model: str | None = None
    shadow_default_model: str | None = None
    # Not columns as such: the fraud model's input (one column per name), and what the shadow
    # models need to build theirs (the transaction and the customer's record).
    feature_names: tuple[str, ...] = ()
    vector: np.ndarray | None = None
    shadow_inputs: tuple | None = None


_SCALARS = [f.name for f in fields(LogRow)][:-3]
_TYPES = {
    "event_ts": pa.timestamp("us", "UTC"), "scored_at": pa.timestamp("us", "UTC"),
    "features_as_of": pa.timestamp("us", "UTC"), "fraud_score": pa.float64(),
    "default_score": pa.float64(), "lookup_ms": pa.float32(), "inference_ms": pa.float32(),
    "total_ms": pa.float32(), "shadow_fraud_score": pa.float64(),
    "shadow_default_score": pa.float64(),
}  # fmt: skip


def customer_hash(key: bytes, customer_id: str) -> str:
    """The keyed hash that stands for a customer in the log (joinable, not reversible)."""
    return hmac.new(key, customer_id.encode(), hashlib.sha256).hexdigest()


def to_table(rows: list[LogRow]) -> pa.Table:
    """Scalars as typed columns; feature vectors stacked per feature list (a behavioural and a
    transaction-only model read different ones) into float64 columns, null where not read."""
    columns = {
        name: pa.array([getattr(r, name) for r in rows], _TYPES.get(name, pa.string()))
        for name in _SCALARS
    }
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
    scored_date = pc.cast(table["scored_at"], pa.date32())
    return table.append_column("scored_date", scored_date)


class InferenceLog:
    def __init__(
        self,
        uri: str,
        *,
        flush_s: float = 2.0,
        max_pending: int = 2_000_000,
        shadow: Callable[[list[LogRow]], None] | None = None,
    ):
        self.uri = uri
        self.flush_s = flush_s
        self.max_pending = max_pending
        self.shadow = shadow  # fills the rows' shadow scores before they are written
        self._rows: collections.deque[LogRow] = collections.deque()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one flush at a time (the thread, or close())
        self._thread: threading.Thread | None = None

    def append(self, row: LogRow) -> None:
        self._rows.append(row)  # deque appends are thread-safe and O(1)

    @property
    def pending(self) -> int:
        return len(self._rows)

    def start(self) -> InferenceLog:
        self._thread = threading.Thread(target=self._run, name="inference-log", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.flush_s):
            self.flush()

    def close(self) -> None:
        """Stop the thread and write what is left."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.flush()

    def flush(self) -> int:
        """Commit the queued rows as one Delta append; returns the rows written."""
        from deltalake import write_deltalake

        with self._lock:
            rows = [self._rows.popleft() for _ in range(len(self._rows))]
            if not rows:
                return 0
            if self.shadow is not None:
                try:
                    self.shadow(rows)
                except Exception:  # shadow scores are information: never block the log
                    log.exception("shadow scoring failed for %d rows", len(rows))
            try:
                write_deltalake(
                    self.uri, to_table(rows), mode="append", partition_by=["scored_date"],
                    schema_mode="merge",
                )  # fmt: skip
            except Exception:
                log.exception("inference log: %d rows not written to %s yet", len(rows), self.uri)
                self._rows.extendleft(reversed(rows))  # retried at the next flush
                excess = len(self._rows) - self.max_pending
                for _ in range(max(excess, 0)):
                    self._rows.popleft()
                if excess > 0:
                    metrics.LOG_ROWS.labels("dropped").inc(excess)
                return 0
            finally:
                metrics.LOG_PENDING.set(len(self._rows))
            metrics.LOG_ROWS.labels("written").inc(len(rows))
            return len(rows)
