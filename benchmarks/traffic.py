"""Replayed traffic: recent purchases from the lakehouse as `POST /score` bodies, for the serving
benchmarks and the demo's scoring step."""

from datetime import timedelta


def recent_requests(n: int = 6000) -> list[dict]:
    """The last two days' purchases as `POST /score` bodies, moved after the newest snapshot
    (customers, devices and amounts are real); every tenth comes from a new customer, whom the
    snapshot cannot know."""
    import numpy as np
    import pyarrow.compute as pc

    from assets.features.online import newest_as_of_date
    from resources.lakehouse import TRANSACTIONS, Lakehouse

    newest = newest_as_of_date(Lakehouse())
    if newest is None:
        raise SystemExit("no snapshot in the lakehouse: run `make demo` first")
    days = [newest - timedelta(days=2), newest - timedelta(days=1)]
    table = Lakehouse().dataset(TRANSACTIONS).to_table(filter=pc.field("event_date").isin(days))
    bodies = []
    for i, r in enumerate(table.to_pylist()[:n]):
        shift = timedelta(days=2 if r["event_date"] == days[0] else 1)
        customer = f"new_{i:06d}" if i % 10 == 0 else r["customer_id"]
        bodies.append(
            {
                "transaction_id": r["transaction_id"],
                "customer_id": customer,
                "event_ts": (r["event_ts"] + shift).isoformat(),
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
