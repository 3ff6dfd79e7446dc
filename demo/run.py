"""`make demo`: the main job end to end on embedded defaults.

Generates the synthetic source, ingests raw partitions, builds the point-in-time snapshots with
dbt and exports them to Delta, in backfill batches through the same Dagster job the schedule
runs; the runs are recorded in DAGSTER_HOME, so `make dev` shows them afterwards.
"""

import argparse
import csv
import hashlib
import logging
import time
from datetime import date, timedelta
from pathlib import Path

from dagster import DagsterInstance

from assets.ingest.contract import TRANSACTIONS_SCHEMA
from assets.names import DRIFT
from assets.partitions import missing_ranges, partition_range_tags
from assets.training.models import thresholds_table
from definitions import defs
from resources.lakehouse import Lakehouse
from riskcore import settings
from riskcore.registry import CHAMPION, MODEL_NAMES, ModelRegistry

TRANSACTION_COLUMNS = TRANSACTIONS_SCHEMA.names

log = logging.getLogger("demo")


def drop_partner_file(day) -> Path:
    """A small partner feed in the landing folder: two good rows and three that the contract
    quarantines (so the demo shows the second source and the quarantine table at work)."""
    folder = settings.load().landing_dir / "transactions" / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    good_hash = hashlib.sha256(b"demo partner card").hexdigest()
    common = {
        "event_ts": f"{day.isoformat()}T12:00:00Z",
        "currency": "EUR",
        "merchant_id": "partner-m1",
        "merchant_category": "retail",
        "device_id": "",
        "country": "DE",
        "installments": "1",
        "card_hash": good_hash,
    }
    rows = [
        {"transaction_id": "pf-1", "customer_id": "partner-c1", "amount": "25.00"},
        {
            "transaction_id": "pf-2",
            "customer_id": "partner-c2",
            "amount": "310.40",
            "channel": "pos",
        },
        {"transaction_id": "pf-3", "customer_id": "partner-c3", "amount": "-5.00"},  # amount <= 0
        {
            "transaction_id": "pf-4",
            "customer_id": "partner-c4",
            "amount": "12.00",
            "channel": "carrier pigeon",
        },  # unknown channel
        {
            "transaction_id": "pf-5",
            "customer_id": "partner-c5",
            "amount": "9.99",
            "channel": "app",
            "card_hash": " ".join(["4111"] + ["1111"] * 3),
        },  # the public Visa test number, grouped
    ]
    path = folder / "partner_feed.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=TRANSACTION_COLUMNS)
        writer.writeheader()
        writer.writerows({"channel": "online", **common, **row} for row in rows)
    return path


def dagster_instance() -> DagsterInstance | None:
    """The instance `make dev` shows (DAGSTER_HOME), or an ephemeral one when none is set."""
    return DagsterInstance.get() if settings.load().dagster_home else None


def run_partition_range(start: date, end: date, instance: DagsterInstance | None, **kwargs):
    """One run of the daily job over partitions start..end, as a backfill batch runs it."""
    return defs.resolve_job_def("daily_features").execute_in_process(
        instance=instance,
        tags=partition_range_tags(start, end),
        **kwargs,
    )


def run_features(last: date) -> None:
    """The daily job over every day up to ``last`` not built yet, a month per run (as a backfill
    runs it): a fresh folder gets its whole history, a folder from an earlier day only its gap."""
    instance = dagster_instance()
    for start, end in missing_ranges(Lakehouse(), last):
        began = time.perf_counter()
        result = run_partition_range(
            start,
            end,
            instance,
            run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
        )
        if not result.success:
            raise SystemExit(f"daily_features failed for {start}..{end}")
        log.info("partitions %s..%s done in %.1f s", start, end, time.perf_counter() - began)


def train_models(instance: DagsterInstance | None, tags: dict[str, str] | None = None):
    """The training job: point-in-time training set, models, registry gate."""
    began = time.perf_counter()
    result = defs.resolve_job_def("train_models").execute_in_process(
        instance=instance,
        tags=tags,
        run_config={
            "loggers": {"console": {"config": {"log_level": "INFO"}}},
        },
    )
    if not result.success:
        raise SystemExit("train_models failed")
    log.info("training done in %.1f s", time.perf_counter() - began)
    return result


def measure_drift(instance: DagsterInstance | None, day: date) -> None:
    """The newest day's drift asset again, now that a champion exists: the daily runs above
    measured none ("no champion yet"), and the UI's drift page should open on a real one."""
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[DRIFT], partition_key=day.isoformat()
    )
    if not result.success:
        raise SystemExit(f"feature drift failed for {day}")


# (label, metric, format, how the gain reads) of the champions' table, as a business reads the
# test weeks: ranking scores gain points, shares gain percentage points, the queue's top gains
# a factor.
_TABLE = (
    ("ROC AUC", "roc_auc", "{:.3f}", "diff"),
    ("PR AUC", "pr_auc", "{:.3f}", "diff"),
    ("recall at 1% FPR (bad caught, 1% of good flagged)", "recall_at_1pct_fpr", "{:.1%}", "pts"),
    ("high-risk precision (bad share of the top 5%)", "precision_at_5pct", "{:.1%}", "ratio"),
    ("top-decile lift (bad rate of top 10% / overall)", "top_decile_lift", "{:.1f}x", "ratio"),
    ("Brier score", "brier", "{:.4f}", "diff"),
)


def _gain(behavioural: float, fallback: float, form: str, how: str) -> str:
    if how == "ratio":
        return f"{behavioural / fallback:.2f}x" if fallback else "-"
    if how == "pts":
        return f"{100 * (behavioural - fallback):+.1f} pt"
    return form.replace("{:", "{:+").format(behavioural - fallback)


def _prefixed(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    return {k.removeprefix(prefix): v for k, v in metrics.items() if k.startswith(prefix)}


def champions() -> str:
    """The registered champions and their test-week metrics: the behavioural model against the
    transaction-only one on the same test rows (the customers a snapshot knew: what their
    history adds, both reading the device, merchant and card), and the request-only one."""
    registry = ModelRegistry.from_settings()
    lines = [f"\nModels (MLflow registry {registry.tracking_uri}):"]
    for name in MODEL_NAMES.values():
        champion = registry.version(name, CHAMPION)
        metrics = registry.run_metrics(champion.run_id)
        behavioural = _prefixed(metrics, "behavioural.")
        fallback = _prefixed(metrics, "transaction_only.known_customers.")
        alone = _prefixed(metrics, "transaction_only.")
        lines += [
            f"  {name} champion v{champion.version}: {champion.description}",
            f"    test rows {behavioural['rows']:,.0f} (customers a snapshot knew), bad rate "
            f"{behavioural['bad_rate']:.2%}",
            f"    {'':<52}{'behavioural':>12}{'transaction-only':>18}{'gain':>10}",
        ]
        for label, key, form, how in _TABLE:
            mine, theirs = behavioural[key], fallback[key]
            lines.append(
                f"    {label:<52}{form.format(mine):>12}{form.format(theirs):>18}"
                f"{_gain(mine, theirs, form, how):>10}"
            )
        lines.append(
            f"    (transaction-only on all its {alone['rows']:,.0f} test rows, new customers "
            f"included: ROC AUC {alone['roc_auc']:.3f}, top-decile lift "
            f"{alone['top_decile_lift']:.1f}x)"
        )
        request = _prefixed(metrics, "request_only.")
        if request:  # docs/architecture.md#model-tiers
            lines.append(
                f"    (request-only, what scores while the store is down, on the same rows: "
                f"ROC AUC {request['roc_auc']:.3f}, top-decile lift "
                f"{request['top_decile_lift']:.1f}x)"
            )
        chosen = registry.load_bundle(name, str(champion.version)).thresholds
        if chosen is not None:  # the training asset's table, as its page in the UI shows it
            lines += [f"    {line}" for line in thresholds_table(chosen).splitlines()]
    return "\n".join(lines)


def score_sample(n: int = 2000) -> str:
    """Score recent purchases with the champions and the online store, through the code
    `POST /score` runs (the service itself: `make serve`)."""
    from collections import Counter

    import numpy as np

    from benchmarks.traffic import recent_requests
    from resources.local_redis import ensure_running
    from resources.online_store import from_environment
    from serving.config import DEV_API_KEY, ServingConfig
    from serving.schemas import ScoreRequest
    from serving.scorer import SEVERITY, Scorer

    url = from_environment().url or ensure_running(settings.load().embedded_redis_dir)
    config = ServingConfig(
        api_keys=(DEV_API_KEY,),
        dev_mode=True,
        redis_url=url,
        tracking_uri=settings.load().tracking_uri(),
        hash_key=settings.load().hash_key(),
    )
    scorer = Scorer.open(config)
    # As the payment flow does: each purchase scored, then recorded in the real-time state
    # (POST /events), in time order.
    requests = sorted(
        (ScoreRequest.model_validate(b) for b in recent_requests(n)), key=lambda r: r.event_ts
    )
    results = []
    for request in requests:
        results.append(scorer.score(request))
        scorer.events.record([request])
    decisions = Counter(r.decision for r in results)
    sources = Counter(r.feature_source for r in results)
    total = np.percentile([r.timing_ms["total_ms"] for r in results], [50, 99])
    lines = [
        f"\nScored {len(results):,} recent purchases (make serve answers the same over HTTP): "
        f"{dict(decisions)}; features {dict(sources)}; p50 {total[0]:.2f} ms, p99 "
        f"{total[1]:.2f} ms in process"
    ]
    flagged = max(results, key=lambda r: (SEVERITY[r.decision], r.fraud_score))
    lines.append(
        f"  most severe: {flagged.transaction_id} fraud {flagged.fraud_score:.3f}, "
        f"default {flagged.default_score} -> {flagged.decision}, reasons:"
    )
    lines += [
        f"    {r['code']:<28} {r['value']!s:<14} {r['contribution']:+.2f}  {r['description'][:60]}"
        for r in flagged.reasons or []
    ]
    return "\n".join(lines)


def summary() -> str:
    from resources.lakehouse import CUSTOMER_FEATURES, LABELS, QUARANTINE, TRANSACTIONS, Lakehouse

    lakehouse = Lakehouse()
    lines = []
    for table in (TRANSACTIONS, LABELS, QUARANTINE, CUSTOMER_FEATURES):
        ds = lakehouse.dataset(table)
        n = ds.count_rows() if ds is not None else 0
        lines.append(f"  {table:<40} {n:>12,} rows   {lakehouse.uri(table)}")
    from featurestore.registry import load_feature_set

    fs = load_feature_set()
    lines.append(
        f"\nFeature set {fs.version}: {len(fs.features)} features + context "
        f"{[c.name for c in fs.context]}, defined in dbt_project/models/marts/"
        "fct_customer_features_daily.yml"
    )
    lines.append(online_summary(fs))
    return "\n".join(lines)


def online_summary(fs) -> str:
    """What the online store serves, and one lookup as serving will do it."""
    import pyarrow.compute as pc

    from resources.lakehouse import CUSTOMER_FEATURES, Lakehouse
    from resources.online_store import from_environment

    store = from_environment().store(fs.version)
    generation = store.current_generation(fresh=True)
    if generation is None:
        return "\nOnline store: empty"
    newest = (
        Lakehouse()
        .dataset(CUSTOMER_FEATURES)
        .to_table(columns=["customer_id"], filter=pc.field("as_of_date") == generation.as_of.date())
    )
    customer = newest["customer_id"][0].as_py()
    store.get(customer)  # the first call also reads the layout; time a warm one
    began = time.perf_counter()
    record = store.get(customer)
    took_us = (time.perf_counter() - began) * 1e6
    sample = dict(list(record.feature_dict().items())[:6])
    return (
        f"\nOnline store ({store.where}): generation {generation.id}, as_of "
        f"{generation.as_of:%Y-%m-%d}, {generation.customers:,} customers, "
        f"{generation.bytes / generation.customers:.0f} B a record, expires "
        f"{generation.expires_at:%Y-%m-%d %H:%M} UTC\n"
        f"  get({customer!r}) in {took_us:.0f} us: {sample} ...\n"
        "  (the embedded redis-server keeps running for `make dev` and `make serve`; "
        "`make stop` stops it)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--days", type=int, help="days from the first day of data (default: up to RISK_DEMO_END)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    env = settings.load()
    first = env.first_day()
    last_day = first + timedelta(days=args.days - 1) if args.days else env.last_demo_day()
    log.info(
        "demo: %d customers, days %s..%s, data in %s",
        env.customers,
        first,
        last_day,
        env.data_dir,
    )
    began = time.perf_counter()
    log.info("landing file with 3 bad rows of 5: %s", drop_partner_file(last_day))
    run_features(last_day)
    instance = dagster_instance()
    train_models(instance)
    measure_drift(instance, last_day)
    print(f"\nDemo finished in {time.perf_counter() - began:.0f} s. Lakehouse:\n{summary()}")
    print(champions())
    print(score_sample())


if __name__ == "__main__":
    main()
