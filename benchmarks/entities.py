"""What device, merchant and card features add to the fraud models: `make bench-entities`
(after `make demo`).

The stored training set (`training/training_set`) already holds each purchase's device,
merchant and card snapshot features (joined point in time by the SDK's road) and its device's
real-time features. The fraud models are trained twice with the project's own training
(`assets.training.models.train_model`: same parameters, sampling, splits) from the specs the
registered models use (`ModelSpec.build`), without and with the entities, and compared on the
same test rows:

* each model on its own rows (behavioural: customers the snapshot knew; transaction-only: all);
* overall, as serving routes (behavioural for a known customer, transaction-only otherwise);
* on the planted rings' purchases (the generator's ring accounts' fraud): the share caught at
  the threshold that flags 1% of good purchases.

It prints ROC AUC, PR AUC and recall at 1% FPR, both ways.
"""

from __future__ import annotations

import argparse
import json
import time

import duckdb
import numpy as np
import pyarrow as pa

from assets.ingest.sources import RawSources
from assets.ingest.synthetic import population
from assets.training.dataset import read_training_set
from assets.training.metrics import evaluate
from assets.training.models import matrix, rows, train_model
from featurestore.registry import load_entity_feature_sets, load_feature_set
from resources.lakehouse import TRAINING_SET, TRANSACTIONS, Lakehouse
from riskcore.model_spec import BEHAVIOURAL, TRANSACTION_ONLY, ModelSpec


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def compare(table: pa.Table, ring_ids: set[str], commit: dict) -> dict:
    """The training set's commit says how it was built (vocabularies, availability lag)."""
    feature_set, entities = load_feature_set(), load_entity_feature_sets()
    vocab = json.loads(commit["risk.vocabularies"])
    lag = float(commit["risk.availability_lag_hours"])
    results: dict[str, dict] = {}
    routed: dict[str, np.ndarray] = {}
    # Every test purchase (the transaction-only model's rows): each model scores them all
    test_all = rows(
        table, ModelSpec.build("fraud", TRANSACTION_ONLY, feature_set, vocab, lag), "test"
    )
    for kind in (BEHAVIOURAL, TRANSACTION_ONLY):
        for label, read in (("without", {}), ("with", entities)):
            spec = ModelSpec.build("fraud", kind, feature_set, vocab, lag, read)
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
    commit = lakehouse.last_commit(TRAINING_SET)
    results = compare(table, ring_purchase_ids(lakehouse), commit)
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
