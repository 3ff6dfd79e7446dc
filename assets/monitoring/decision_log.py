"""The inference log, as monitoring reads it: decisions on purchases made in a time range."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from resources.lakehouse import Lakehouse
from riskcore import settings


def read_decisions(
    lakehouse: Lakehouse,
    start: datetime,
    end: datetime,
    columns: list[str] | None = None,
    where: pc.Expression | None = None,
    *,
    by: str = "event_ts",
) -> pa.Table | None:
    """Logged decisions on purchases with ``start <= event_ts < end`` (``by="scored_at"``:
    decisions made in that range, whenever the purchase was) and ``where``; None when serving
    has logged nothing yet. Only the columns that exist are read (a log written before a
    column was added lacks it)."""
    uri = settings.load().inference_log(lakehouse.root)  # where serving writes it
    try:
        log = DeltaTable(uri).to_pyarrow_dataset() if uri else None
    except TableNotFoundError:
        return None
    if log is None:
        return None
    at = lambda t: pa.scalar(t, pa.timestamp("us", "UTC"))  # noqa: E731
    # A decision is scored after its purchase: the scored_date partitions before start prune.
    window = (
        (pc.field("scored_date") >= start.date())
        & (pc.field(by) >= at(start))
        & (pc.field(by) < at(end))
    )
    names = [c for c in columns if c in log.schema.names] if columns else None
    return log.to_table(columns=names, filter=window if where is None else window & where)
