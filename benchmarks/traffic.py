"""Replayed traffic: recent purchases from the lakehouse as `POST /score` bodies, for the serving
benchmarks and the demo's scoring step."""

from datetime import UTC, datetime, timedelta


def recent_requests(n: int = 6000) -> list[dict]:
    """The last two days' purchases as `POST /score` bodies, replayed between the newest
    snapshot's as_of and now, in their order (a purchase before the as_of would be scored
    without the snapshot; one after now is refused); customers, devices and amounts are real,
    and every tenth comes from a new customer, whom the snapshot cannot know."""
    import numpy as np
    import pyarrow.compute as pc

    from assets.features.online import newest_as_of_date
    from resources.lakehouse import TRANSACTIONS, Lakehouse
    from riskcore.timestamps import as_of_time

    newest = newest_as_of_date(Lakehouse())
    if newest is None:
        raise SystemExit("no snapshot in the lakehouse: run `make demo` first")
    days = [newest - timedelta(days=2), newest - timedelta(days=1)]
    table = Lakehouse().dataset(TRANSACTIONS).to_table(filter=pc.field("event_date").isin(days))
    as_of = as_of_time(newest)
    # Two days of purchases squeezed into the time since the as_of (at most two days).
    room = min(timedelta(days=2), datetime.now(UTC) - as_of - timedelta(seconds=1))
    squeeze = room / timedelta(days=2)
    bodies = []
    for i, r in enumerate(table.to_pylist()[:n]):
        since = r["event_ts"] - as_of_time(days[0])
        customer = f"new_{i:06d}" if i % 10 == 0 else r["customer_id"]
        bodies.append(
            {
                "transaction_id": r["transaction_id"],
                "customer_id": customer,
                "event_ts": (as_of + since * squeeze).isoformat(),
                "amount": str(r["amount"]),
                "currency": r["currency"],
                "merchant_id": r["merchant_id"],
                "merchant_category": r["merchant_category"],
                "channel": r["channel"],
                "device_id": r["device_id"],
                "country": r["country"],
                "installments": r["installments"],
                "card_hash": r["card_hash"],
            }
        )
    np.random.default_rng(0).shuffle(bodies)
    return bodies
