"""Exact instants as integer microseconds since the epoch: the unit the online store, the
real-time state and the inference log share (float seconds would lose the last digits)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def micros(at: datetime) -> int:
    """Exact microseconds since the epoch."""
    return (at - _EPOCH) // _US


def as_of_time(as_of_date: date) -> datetime:
    """The as_of of a snapshot date: its 00:00 UTC."""
    return datetime(as_of_date.year, as_of_date.month, as_of_date.day, tzinfo=UTC)
