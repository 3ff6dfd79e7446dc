"""`make drift-demo`: drift arrives, the sensor fires, the retrained challenger meets the gate.

After `make demo`'s data (run first when missing), the newest days (14 by default) are
generated again with drift injected (RISK_DRIFT_FROM's pattern: larger amounts, resale
categories, online purchases; see assets/ingest/synthetic.py) and rebuilt by the daily job:
raw -> dbt -> Delta -> online store -> `monitoring/feature_drift`. The `drift_retrain` sensor
is evaluated on that measurement as the daemon would; its run request (tags naming what
drifted) is executed as the `train_models` job, with the same training settings a schedule or
the UI would use, and ends in the champion/challenger gate. Runs are recorded in DAGSTER_HOME:
`make dev` shows them, with the PSI metadata plotted over time."""

import argparse
import logging
import time
from datetime import date, timedelta

from dagster import (
    AssetMaterialization,
    DagsterInstance,
    RunRequest,
    SkipReason,
    build_sensor_context,
)

from assets.ingest.sources import RawSources
from assets.names import DRIFT, PSI
from definitions import defs
from demo import run as demo
from resources.lakehouse import TRANSACTIONS, Lakehouse
from riskcore import settings
from riskcore.registry import MODEL_NAMES, ModelRegistry

log = logging.getLogger("drift_demo")


def newest_raw_day() -> date | None:
    days = Lakehouse().partition_dates(TRANSACTIONS, "event_date")
    return days[-1] if days else None


def has_champion() -> bool:
    return ModelRegistry.from_settings().alias_version(MODEL_NAMES["fraud"]) is not None


def drift_table(metadata: dict, top: int = 12) -> str:
    psis = sorted(
        (
            (float(v.value), k.split("/", 1)[1])
            for k, v in metadata.items()
            if k.startswith(f"{PSI}/")
        ),
        reverse=True,
    )
    return "\n".join(f"    {name:<34} PSI {value:7.3f}" for value, name in psis[:top])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=14, help="newest days replayed with drift")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    began = time.perf_counter()
    newest = newest_raw_day()
    instance = demo.dagster_instance()
    if newest is None or not has_champion():
        log.info("no demo data yet: running `make demo`'s pipeline first")
        demo.run_features(settings.load().last_demo_day())
        demo.train_models(instance)
        newest = newest_raw_day()

    # The newest days are generated again, drifting: the champion learned them clean.
    last, first = newest, newest - timedelta(days=args.days - 1)
    log.info("replaying %s..%s with drift injected", first, last)
    drifting = RawSources.from_settings(drift_from=first)
    result = demo.run_partition_range(first, last, instance, resources={"raw_sources": drifting})
    if not result.success:
        raise SystemExit(f"daily_features failed for {first}..{last}")
    measured = result.asset_materializations_for_node("monitoring__feature_drift")[-1].metadata
    print(
        f"\nDrift of the snapshot as_of {measured['as_of'].value} against the champion's "
        f"reference ({measured.get('reference_as_of').value}), top features:"
    )
    print(drift_table(measured))
    print(f"  evidently report: {measured['evidently_report'].value}")

    sensor = defs.resolve_sensor_def("drift_retrain")
    with DagsterInstance.ephemeral() if instance is None else instance as sensor_instance:
        if instance is None:  # no DAGSTER_HOME: report the measurement to a throwaway one
            sensor_instance.report_runless_asset_event(
                AssetMaterialization(DRIFT, metadata={k: v.value for k, v in measured.items()})
            )
        tick = sensor(build_sensor_context(instance=sensor_instance))
    if isinstance(tick, SkipReason):
        print(f"\nSensor drift_retrain: no run ({tick.skip_message})")
        return
    assert isinstance(tick, RunRequest)
    print(f"\nSensor drift_retrain fired: run request {tick.run_key}, tags {tick.tags}")
    trained = demo.train_models(instance, tags=tick.tags)
    models = trained.asset_materializations_for_node("risk_models")[-1].metadata
    print("\nRetrained on the drifted data, then the champion/challenger gate:")
    for target, name in MODEL_NAMES.items():
        outcome = "promoted to champion" if models[f"{target}_promoted"].value else "challenger"
        print(
            f"  {name} v{models[f'{target}_version'].value}: {outcome}: "
            f"{models[f'{target}_gate'].value}"
        )
    print(
        f"\nDrift demo finished in {time.perf_counter() - began:.0f} s "
        "(`make dev` shows the runs, the PSI plots and the sensor)."
    )


if __name__ == "__main__":
    main()
