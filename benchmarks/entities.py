"""What device, merchant and card features would add to the fraud models: `make bench-entities`
(after `make demo`).

The stored training set (`training/training_set`), each purchase joined point in time to the
device, merchant and card snapshots of its device, merchant and card by the SDK
(`historical_features` with the entities' features: the partition in force at the purchase,
nulls for an entity the snapshot does not hold). Then the fraud models are trained twice with
the project's own training (`assets.training.models.train_model`: same parameters, sampling,
splits), without and with the entity features, and compared on the same test rows:

* each model on its own rows (behavioural: customers the snapshot knew; transaction-only: all);
* overall, as serving routes (behavioural for a known customer, transaction-only otherwise);
* on the planted rings' purchases (the generator's ring accounts' fraud): the share caught at
  the threshold that flags 1% of good purchases.

Entity features are not served yet (docs/architecture.md#entities): this measures what serving
them would buy. It prints ROC AUC, PR AUC and recall at 1% FPR, both ways.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from assets.ingest.sources import RawSources
from assets.ingest.synthetic import population
from assets.training.dataset import read_training_set
from assets.training.metrics import evaluate
from assets.training.models import matrix, rows, train_model
from featurestore import historical_features
from featurestore.registry import load_feature_set
from resources.lakehouse import ENTITY_KEYS, TRAINING_SET, TRANSACTIONS, Lakehouse
from riskcore.model_spec import BEHAVIOURAL, TRANSACTION_ONLY, ModelSpec


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def with_entity_features(lakehouse: Lakehouse, table: pa.Table) -> tuple[pa.Table, list[str]]:
    """The training set with every entity's snapshot features (``device_*``, ``merchant_*``,
    ``card_*``; NaN where the entity's snapshot has no row), through the SDK, and their names."""
    names = [
        f"{entity}_{c.name}"
        for entity in ENTITY_KEYS
        for c in load_feature_set(entity=entity).features
    ]
    raw = lakehouse.dataset(TRANSACTIONS)  # noqa: F841 (DuckDB reads it by name)
    purchases = table.select(["transaction_id", "customer_id", "event_ts"])  # noqa: F841
    first, last = (d.as_py().date() for d in pc.min_max(table["event_ts"]).values())
    keyed = duckdb.sql(
        "select p.*, "
        + ", ".join(f"r.{k}" for k in ENTITY_KEYS.values())
        + " from purchases as p join raw as r using (transaction_id) "
        f"where r.event_date between '{first}' and '{last}' "
        "qualify row_number() over (partition by p.transaction_id order by r.event_ts) = 1"
    ).to_arrow_table()
    joined = historical_features(keyed, names, lakehouse=lakehouse)
    features = pl.from_arrow(joined.select(["transaction_id", *names]))
    out = pl.from_arrow(table).join(
        features, on="transaction_id", how="left", maintain_order="left"
    )
    return out.with_columns(pl.col(names).fill_nan(None).fill_null(np.nan)).to_arrow(), names


def compare(table: pa.Table, entity_names: list[str], ring_ids: set[str], commit: dict) -> dict:
    """The training set's commit says how it was built (vocabularies, availability lag)."""
    feature_set = load_feature_set()
    vocab = json.loads(commit["risk.vocabularies"])
    lag = float(commit["risk.availability_lag_hours"])
    results: dict[str, dict] = {}
    routed: dict[str, np.ndarray] = {}
    # Every test purchase (the transaction-only model's rows): each model scores them all
    test_all = rows(
        table, ModelSpec.build("fraud", TRANSACTION_ONLY, feature_set, vocab, lag), "test"
    )
    for kind in (BEHAVIOURAL, TRANSACTION_ONLY):
        base = ModelSpec.build("fraud", kind, feature_set, vocab, lag)
        # Entity features ride after the others (the spec's last group) for this comparison
        wide = replace(base, realtime_features=base.realtime_features + tuple(entity_names))
        for label, spec in (("without", base), ("with", wide)):
            _log(f"training fraud/{kind} {label} entity features ({len(spec.feature_names)})")
            trained = train_model(table, spec)
            results[f"{kind} {label}"] = trained.metrics
            routed[f"{kind} {label}"] = trained.model.predict(matrix(test_all, spec))
    known = test_all["customer_known"].to_numpy(zero_copy_only=False)
    y = test_all["fraud_label"].to_numpy(zero_copy_only=False).astype(int)
    ring = np.isin(test_all["transaction_id"].to_numpy(zero_copy_only=False), list(ring_ids)) & (
        y == 1
    )
    for label in ("without", "with"):
        score = np.where(
            known, routed[f"{BEHAVIOURAL} {label}"], routed[f"{TRANSACTION_ONLY} {label}"]
        )
        results[f"overall {label}"] = evaluate(y, score)
        # The rings' recall at the threshold flagging 1% of good purchases
        threshold = np.quantile(score[y == 0], 0.99)
        results[f"overall {label}"]["ring_recall_at_1pct_fpr"] = (
            float((score[ring] > threshold).mean()) if ring.any() else float("nan")
        )
        results[f"overall {label}"]["ring_purchases"] = int(ring.sum())
    return results


def ring_purchase_ids(lakehouse: Lakehouse) -> set[str]:
    """The purchases of the generator's ring accounts (all of them; the fraud among them are
    the rings' bust-outs)."""
    config = RawSources.from_settings().generator_config()
    pop = population(config)
    members = pop.customer_ids.take(pa.array(np.flatnonzero(pop.ring >= 0))).to_pylist()
    raw = lakehouse.dataset(TRANSACTIONS)  # noqa: F841 (DuckDB reads it by name)
    with duckdb.connect() as con:
        ids = con.sql(
            "select transaction_id from raw where customer_id in (select unnest($m))",
            params={"m": members},
        ).fetchall()
    return {i for (i,) in ids}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="end with the results as JSON")
    args = parser.parse_args()
    lakehouse = Lakehouse()
    table = read_training_set(lakehouse)
    _log(f"training set: {table.num_rows:,} purchases")
    began = time.perf_counter()
    table, names = with_entity_features(lakehouse, table)
    _log(f"joined {len(names)} entity features in {time.perf_counter() - began:.1f} s")
    commit = lakehouse.last_commit(TRAINING_SET)
    results = compare(table, names, ring_purchase_ids(lakehouse), commit)
    print("\nfraud, test weeks      ROC AUC   PR AUC  recall@1%FPR  rows (bad)")
    for name, m in results.items():
        print(
            f"  {name:<22} {m['roc_auc']:.4f}  {m['pr_auc']:.4f}  {m['recall_at_1pct_fpr']:.4f}"
            f"  {int(m['rows']):,} ({m['bad_rate']:.2%})"
        )
    for label in ("without", "with"):
        m = results[f"overall {label}"]
        print(
            f"  rings, {label:<7} entity features: {m['ring_recall_at_1pct_fpr']:.3f} of "
            f"{m['ring_purchases']} ring fraud purchases caught at 1% FPR"
        )
    w, wo = results["overall with"], results["overall without"]
    print(f"\n  overall ROC AUC gain {w['roc_auc'] - wo['roc_auc']:+.4f} (goal >= +0.02)")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
