"""`make canary-demo`: a release goes shadow -> canary -> full, or is halted on the way.

After `make demo`'s data (run first when missing):

1. a deliberately worse fraud release (trained on shuffled labels: the gate would refuse it) is
   put on canary by hand, as a hurried release would be, on RISK_CANARY_SHARE of customers
   (5% by default); recent purchases are scored through the service's scorer, each customer by
   the model its bucket names, into the inference log; the `canary_watch` sensor is evaluated
   as the daemon would and its `canary_check` run halts the canary, the reason on the MLflow
   version;
2. the `train_models` job retrains on the same data: the challenger passes the gate and
   becomes the canary by itself; after more traffic, the check promotes it to champion (the
   demo's clean period is 0 hours and 300 canary decisions, RISK_CANARY_CLEAN_HOURS and
   RISK_CANARY_MIN_DECISIONS; the defaults wait 24 hours and 500).

Then the inference log shows the share of traffic each model acted on. Runs are recorded in
DAGSTER_HOME: `make dev` shows `rollout/canary_comparison` with each verdict."""

import argparse
import json
import logging
import os
import time
from collections import Counter
from datetime import UTC, datetime

import numpy as np
import polars as pl
import pyarrow as pa
from dagster import RunRequest, build_sensor_context

from assets.training.dataset import read_training_set
from assets.training.models import log_and_register, train_bundle
from definitions import defs
from demo import drift as drift_demo
from demo import run as demo
from featurestore.registry import load_feature_set
from resources.lakehouse import TRAINING_SET, Lakehouse
from riskcore import settings
from riskcore.registry import MODEL_NAMES, ModelRegistry, model_name

log = logging.getLogger("canary_demo")
NAME = model_name("fraud")


def worse_release(registry: ModelRegistry) -> str:
    """The fraud models retrained on shuffled labels and registered: a release that learned
    nothing, as a broken label join would produce."""
    lakehouse = Lakehouse()
    table = read_training_set(lakehouse)
    commit = lakehouse.last_commit(TRAINING_SET)
    labels = np.random.default_rng(11).permutation(
        table["fraud_label"].to_numpy(zero_copy_only=False)
    )
    index = table.schema.get_field_index("fraud_label")
    table = table.set_column(index, "fraud_label", pa.array(labels, table.field(index).type))
    bundle, trained = train_bundle(
        table,
        "fraud",
        load_feature_set(),
        json.loads(commit["risk.vocabularies"]),
        float(commit["risk.availability_lag_hours"]),
    )
    version, _ = log_and_register(
        bundle,
        trained,
        training_hash="canary-demo-shuffled-labels",
        model_name=NAME,
        tracking_uri=registry.tracking_uri,
        artifact_root=str(settings.load().mlflow_artifacts),
        run_name="canary demo: a deliberately worse release (shuffled labels)",
    )
    return version


def traffic(n: int) -> list:
    """Recent purchases scored as `POST /score` scores them, into the inference log."""
    from benchmarks.traffic import recent_requests
    from resources.local_redis import ensure_running
    from resources.online_store import from_environment
    from serving.config import DEV_API_KEY, ServingConfig
    from serving.inference_log import InferenceLog
    from serving.schemas import ScoreRequest
    from serving.scorer import Scorer

    env = settings.load()
    config = ServingConfig(
        api_keys=(DEV_API_KEY,),
        dev_mode=True,
        redis_url=from_environment().url or ensure_running(env.embedded_redis_dir),
        tracking_uri=env.tracking_uri(),
        hash_key=env.hash_key(),
        inference_log_uri=env.inference_log(),
    )
    inference_log = InferenceLog(config.inference_log_uri, flush_s=1.0, commit_s=1.0).start()
    scorer = Scorer.open(config, inference_log=inference_log)
    requests = [ScoreRequest.model_validate(b) for b in recent_requests(n)]
    results = []
    for start in range(0, len(requests), 64):  # batches as the service forms them under load
        results += scorer.score_many(requests[start : start + 64])
    inference_log.close()
    sources = Counter(r.feature_source for r in results)
    log.info("scored %d recent purchases into the inference log: %s", len(results), dict(sources))
    return results


def check(instance) -> dict:
    """The sensor, evaluated as the daemon would; its run request executed."""
    request = defs.get_sensor_def("canary_watch")(build_sensor_context(instance=instance))
    if not isinstance(request, RunRequest):
        raise SystemExit(f"the canary sensor did not fire: {request}")
    result = defs.resolve_job_def("canary_check").execute_in_process(
        instance=instance, tags=request.tags
    )
    event = result.asset_materializations_for_node("rollout__canary_comparison")[-1]
    return {k: v.value for k, v in event.metadata.items()}


def report(step: str, measured: dict) -> None:
    print(f"\n{step}\n  {measured['canary/fraud']}\n")
    print("\n".join(f"  {line}" for line in measured.get("comparison", "").splitlines()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--requests", type=int, default=10_000, help="purchases per step (at most two days')"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ["RISK_CANARY_CLEAN_HOURS"] = "0"  # the demo does not wait a day ...
    os.environ["RISK_CANARY_MIN_DECISIONS"] = "300"  # ... nor for 500 canary decisions
    began = time.perf_counter()
    instance = demo.dagster_instance()
    if drift_demo.newest_raw_day() is None or not drift_demo.has_champion():
        log.info("no demo data yet: running `make demo`'s pipeline first")
        demo.run_features(settings.load().last_demo_day())
        demo.train_models(instance)
    registry = ModelRegistry.from_settings()
    for name in MODEL_NAMES.values():  # the demo starts with no canary (an earlier run's ends)
        registry.end_canary(name, "ended by make canary-demo's start", halted=False)
    share = settings.load().canary_share
    if share <= 0:
        raise SystemExit("RISK_CANARY_SHARE is 0: promotions go to full at once, no canary")
    champion = registry.alias_version(NAME)
    start = datetime.now(UTC)

    worse = worse_release(registry)
    registry.start_canary(
        NAME, worse, share, datetime.now(UTC).isoformat(), "canary demo: put on canary by hand"
    )
    log.info(
        "v%s on canary for %.0f%% of customers; scoring %d purchases",
        worse,
        share * 100,
        args.requests,
    )
    traffic(args.requests)
    report(f"1. a deliberately worse release, v{worse}, on canary:", check(instance))

    log.info("retraining on the same data: the challenger meets the gate")
    demo.train_models(instance, tags={"risk/reason": "canary demo: a good release"})
    running = registry.canary(NAME)
    if running is None:
        gate = registry.version(NAME, "challenger").description
        raise SystemExit(f"the retrain did not start a canary: {gate}")
    traffic(args.requests)
    report(f"2. a good release, v{running[0]}, on canary:", check(instance))

    from assets.monitoring.decision_log import read_decisions

    decided = read_decisions(
        Lakehouse(), start, datetime.now(UTC), ["fraud_model", "fraud_role"], by="scored_at"
    )
    shares = (
        pl.from_arrow(decided)
        .group_by("fraud_model", "fraud_role")
        .len()
        .with_columns(share=pl.col("len") / pl.col("len").sum())
        .sort("fraud_model", "fraud_role")
    )
    print(f"\nThe inference log: who decided the {decided.num_rows:,} fraud scores of this demo")
    for m, role, n, part in shares.iter_rows():
        print(f"  {m:<14} {role:<9} {n:>7,}  {part:6.1%}")
    print(
        f"\nChampion before: v{champion}; now: v{registry.alias_version(NAME)}. "
        f"Canary demo finished in {time.perf_counter() - began:.0f} s."
    )


if __name__ == "__main__":
    main()
