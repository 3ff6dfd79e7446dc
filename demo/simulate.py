"""`make simulate`: a season of operation as the daemon runs it, a day at a time.

It starts from the demo's history (built first in the simulation's own data folder when
missing, with a calendar that ends ``--days`` before yesterday, so every simulated day is a
real, past daily partition). Each simulated day D, the clock (RISK_CLOCK) moves as a day does:

1. during D, D's purchases (the generator's, as the daily job will ingest them) are scored
   through the service's scorer one by one, as the service scores at this traffic (the
   inference log fills), each then recorded as an event;
2. at D + 1 00:30 the compaction schedule's tick, at 02:00 the daily schedule's tick builds
   partition D;
3. at 03:00 every sensor is evaluated as the daemon would (cursors kept) and its run requests
   are executed, in order; on Mondays at 04:00 the weekly retrain.

Each day's line ends with its wall time and where it went (seconds: worse release, scoring and
log compaction, daily run, sensors and their runs, weekly retrain, the day's record).

Drift is injected from ``--drift-day``; on ``--worse-day`` (default: the season's first Monday
after its first day, right after the 04:00 weekly retrain) a deliberately worse fraud model
(labels shuffled) is promoted over the champion, so the performance path
(``monitoring/realized_performance``) must roll it back once its decisions mature, within the
week before the next weekly retrain would replace it.

The simulation's own settings, stated in its output (``SIMULATION_SETTINGS``; the environment
may override them): chargebacks arrive 1-3 days after the purchase (RISK_CHARGEBACK_DELAY_DAYS,
default 2-60) and a fraud decision matures after 3 days (RISK_FRAUD_MATURITY_DAYS, default 45),
for training and for realized performance alike. With the defaults a release's decisions
mature 45 days on, long after a weekly retrain has replaced it, so a bad release could never be
rolled back within a season; the short delays compress the weeks a chargeback takes into days.
BNPL defaults keep their delays (30-90 days) and maturity (60 days). The data folder's labels
are generated with these delays from its first day (its history is built with them, recorded in
``simulation.json``), and a folder built with other delays is refused.

The day-by-day log is printed, then the season is checked: every partition built exactly once
with no gap, freshness green every day, the online store serving the newest snapshot every day,
drift opening exactly one retrain (cooldown) judged on fair weeks, the worse model (that very
version) rolled back by the performance path, no run failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dagster import DagsterInstance, RunRequest, build_sensor_context
from pydantic import ValidationError

from assets.features.online import newest_as_of_date, online_customer_features
from assets.ingest.sources import RawSources
from assets.monitoring.drift import snapshot_reference
from assets.names import DRIFT, PERFORMANCE
from assets.partitions import built_days
from assets.training.dataset import read_training_set
from assets.training.models import log_and_register, train_bundle
from definitions import defs
from demo import run as demo
from featurestore.registry import load_feature_set
from resources.lakehouse import TRAINING_SET, Lakehouse
from resources.local_redis import ensure_running
from resources.online_store import from_environment as online_store_from_environment
from riskcore import settings
from riskcore.registry import CHAMPION, MODEL_NAMES, ModelRegistry
from sensors.jobs import FRESHNESS_CHECKS
from serving.config import ServingConfig
from serving.inference_log import InferenceLog
from serving.schemas import ScoreRequest
from serving.scorer import Scorer

log = logging.getLogger("simulate")
# A season compresses a chargeback's weeks into days, so a release's decisions mature within
# its week (see the module's docstring); set unless the environment sets them.
# A retrain that passes the gate is promoted at once (RISK_CANARY_SHARE=0): the season scores
# with the simulated clock's purchases but logs real scoring times, which a canary's period is
# measured in; the canary path is `make canary-demo` and tests/test_canary.py.
SIMULATION_SETTINGS = {
    "RISK_CHARGEBACK_DELAY_DAYS": "1,3",
    "RISK_FRAUD_MATURITY_DAYS": "3",
    "RISK_CANARY_SHARE": "0",
}
SENSORS = ("catch_up", "online_store_refill", "drift_retrain", "performance_retrain", "freshness")
REQUEST_FIELDS = tuple(ScoreRequest.model_fields)


@dataclass
class Season:
    """What the season did, day by day, to be checked at its end."""

    days: list[dict] = field(default_factory=list)
    runs: list[dict] = field(default_factory=list)  # job, partition, trigger, success
    retrains: list[dict] = field(default_factory=list)  # trigger, gate decisions
    worse: dict = field(default_factory=dict)  # day, version, replaced: the worse release


def apply_simulation_settings() -> list[str]:
    """The simulation's settings, unless the environment sets them; what is in force, stated."""
    for name, value in SIMULATION_SETTINGS.items():
        os.environ.setdefault(name, value)
    env, defaults = settings.load(), settings.Settings.model_fields
    stated = []
    for name in ("chargeback_delay_days", "fraud_maturity_days", "default_delay_days"):
        value, default = getattr(env, name), defaults[name].default
        shown = lambda v: f"{v[0]}-{v[1]}" if isinstance(v, tuple) else str(v)  # noqa: E731
        stated.append(f"{settings.variable(name)}={shown(value)} (default {shown(default)})")
    stated.append(
        f"RISK_DEFAULT_MATURITY_DAYS={env.default_maturity_days} "
        f"(default {defaults['default_maturity_days'].default})"
    )
    stated.append(
        f"RISK_CANARY_SHARE={env.canary_share:g} (default "
        f"{defaults['canary_share'].default:g}: promoted at once, no canary)"
    )
    return stated


def label_delays_of(data_dir) -> dict:
    """The label delays the data folder's labels are generated with (its record), or {}."""
    record = data_dir / "simulation.json"
    return json.loads(record.read_text()) if record.exists() else {}


def keep_label_delays(env) -> None:
    """Record the delays a new history is built with; refuse a folder built with others (a
    day's labels are the earlier purchases whose delay ends that day: one setting a folder)."""
    delays = {
        "chargeback_delay_days": list(env.chargeback_delay_days),
        "default_delay_days": list(env.default_delay_days),
    }
    recorded = label_delays_of(env.data_dir)
    if recorded and recorded != delays:
        raise SystemExit(
            f"{env.data_dir} holds labels generated with delays {recorded}, not {delays}: "
            "remove the folder or set the same delays"
        )
    env.data_dir.mkdir(parents=True, exist_ok=True)
    (env.data_dir / "simulation.json").write_text(json.dumps(delays))


def first_monday(start: date) -> int:
    """The offset of the season's first Monday after its first day: the weekly retrain ran at
    04:00 and the next one is a week away."""
    return 1 + (7 - (start + timedelta(days=1)).weekday()) % 7


def set_clock(at: datetime) -> None:
    """The pipeline's now (riskcore/settings.py reads RISK_CLOCK at every use)."""
    os.environ["RISK_CLOCK"] = at.isoformat()


def purchases(sources: RawSources, day: date) -> list[ScoreRequest]:
    """The day's purchases as `POST /score` bodies, in time order."""
    requests = []
    for _, table in sources.batches("transactions", day):
        fields = [name for name in REQUEST_FIELDS if name in table.column_names]
        for row in table.sort_by("event_ts").select(fields).to_pylist():
            row["amount"] = str(row["amount"])
            try:
                requests.append(ScoreRequest.model_validate(row))
            except ValidationError as exc:  # refused at the door, as the service would (422)
                log.warning("%s refused: %s", row["transaction_id"], exc.errors()[0]["msg"])
    return requests


def score_day(scorer: Scorer, requests: list[ScoreRequest]) -> Counter:
    """Score each purchase alone, as the service's micro-batcher does at this traffic (a
    purchase every ~20 s: no batch forms), then record it as an event (POST /events after the
    payment). A batch would log its whole model time as each of its rows' ``inference_ms``,
    which the latency SLA of ``monitoring/realized_performance`` judges."""
    decisions: Counter = Counter()
    for i in range(len(requests)):
        one = requests[i : i + 1]
        decisions.update(r.decision for r in scorer.score_many(one))
        scorer.events.record(one)
    return decisions


def execute(instance, request: RunRequest, job_name: str, season: Season, resources=None):
    """A run request executed as the daemon's run launcher would (in order, one at a time)."""
    job = defs.resolve_job_def(job_name)
    result = job.execute_in_process(
        instance=instance,
        tags=request.tags,
        partition_key=request.partition_key,
        run_config=request.run_config or None,
        resources=resources,
        raise_on_error=False,
    )
    trigger = request.tags.get("risk/trigger") or request.tags.get("dagster/schedule_name", "")
    partition = request.partition_key or request.tags.get("dagster/asset_partition_range_start")
    season.runs.append(
        {"job": job_name, "partition": partition, "trigger": trigger, "ok": result.success}
    )
    if job_name == "train_models" and result.success:
        models = result.asset_materializations_for_node("risk_models")[-1].metadata
        season.retrains.append(
            {
                "trigger": trigger,
                **{
                    target: (models[f"{target}_promoted"].value, models[f"{target}_gate"].value)
                    for target in MODEL_NAMES
                },
            }
        )
    return result


def evaluate_sensors(instance, cursors: dict, season: Season, sources) -> list[str]:
    """Every sensor once, as a daemon tick; their run requests executed in order."""
    fired = []
    for name in SENSORS:
        sensor = defs.resolve_sensor_def(name)
        context = build_sensor_context(
            instance=instance, cursor=cursors.get(name), resources=defs.resources
        )
        outcome = sensor(context)
        cursors[name] = context.cursor
        requests = outcome if isinstance(outcome, list) else [outcome]
        for request in requests:
            if not isinstance(request, RunRequest):
                continue
            fired.append(name)
            if name == "online_store_refill":  # targets the online store asset, not a job
                result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
                    instance=instance,
                    asset_selection=[online_customer_features.key],
                    partition_key=request.partition_key,
                    tags=request.tags,
                    raise_on_error=False,
                )
                season.runs.append(
                    {
                        "job": "refill",
                        "partition": request.partition_key,
                        "trigger": name,
                        "ok": result.success,
                    }
                )
                continue
            resources = {"raw_sources": sources} if sensor.job_name == "daily_features" else None
            execute(instance, request, sensor.job_name, season, resources)
    return fired


def promote_worse_model(tracking_uri: str, lakehouse: Lakehouse) -> tuple[str, str | None]:
    """A deliberately worse fraud model (labels shuffled) promoted over the champion, as a bad
    release would be; it replaces the champion, so rollback has a way back. It is logged as the
    training job logs a model (vocabularies, snapshot reference for drift), labels aside."""
    table = read_training_set(lakehouse)
    labels = table["fraud_label"].to_numpy(zero_copy_only=False).copy()
    np.random.default_rng(13).shuffle(labels)
    shuffled = table.set_column(
        table.schema.get_field_index("fraud_label"),
        table.schema.field("fraud_label"),
        pa.array(labels, table.schema.field("fraud_label").type),
    )
    commit = lakehouse.last_commit(TRAINING_SET)
    feature_set = load_feature_set()
    bundle, trained = train_bundle(
        shuffled,
        "fraud",
        feature_set,
        json.loads(commit["risk.vocabularies"]),
        float(commit["risk.availability_lag_hours"]),
    )
    newest = pc.max(table["snapshot_as_of"]).as_py()
    name = MODEL_NAMES["fraud"]
    version, _ = log_and_register(
        bundle,
        trained,
        training_hash="simulation: labels shuffled",
        model_name=name,
        tracking_uri=tracking_uri,
        artifact_root=str(settings.load().mlflow_artifacts),
        snapshot_reference=snapshot_reference(lakehouse, feature_set, newest.date()),
        run_name=f"{name} deliberately worse (simulation)",
    )
    registry = ModelRegistry(tracking_uri)
    replaced = registry.alias_version(name, CHAMPION)
    registry.promote(name, version, "simulation: a deliberately worse release", replaced)
    return version, replaced


def simulate(days: int, drift_day: int, worse_day: int | None) -> Season:
    env = settings.load()
    instance = demo.dagster_instance() or DagsterInstance.ephemeral()
    lakehouse = Lakehouse()
    new = newest_as_of_date(lakehouse) is None
    if not new and not label_delays_of(env.data_dir):
        log.warning("the history was built outside the simulation: its label delays unknown")
    else:
        keep_label_delays(env)
    if new or ModelRegistry.from_settings().alias_version(MODEL_NAMES["fraud"]) is None:
        began = time.perf_counter()
        log.info("building the demo's history first (days up to %s)", env.last_demo_day())
        demo.run_features(env.last_demo_day())
        demo.train_models(instance)
        log.info("history built in %.0f s", time.perf_counter() - began)
    start = max(built_days(lakehouse)) + timedelta(days=1)
    drift_from = start + timedelta(days=drift_day)
    worse_day = first_monday(start) if worse_day is None else worse_day
    if worse_day < days:
        log.info(
            "the worse fraud model will be promoted on %s (%s, day %d of the season)",
            start + timedelta(days=worse_day),
            f"{start + timedelta(days=worse_day):%A}",
            worse_day,
        )
    season, cursors = Season(), {}
    # The service's configuration, on the online store the pipeline loads (embedded by default).
    url = online_store_from_environment().url or ensure_running(env.embedded_redis_dir)
    config = dataclasses.replace(ServingConfig.from_environment(), redis_url=url)
    inference_log = InferenceLog(
        config.inference_log_uri, flush_s=config.log_flush_s, commit_s=config.log_commit_s
    ).start()
    scorer = Scorer.open(config, inference_log=inference_log)
    try:
        for offset in range(days):
            day = start + timedelta(days=offset)
            began = time.perf_counter()
            phases = Counter()  # seconds of the day's phases
            sources = RawSources.from_settings(drift_from=drift_from)
            if offset == worse_day:
                worse, replaced = promote_worse_model(config.tracking_uri, lakehouse)
                season.worse = {"day": day, "version": worse, "replaced": replaced}
                log.info(
                    "day %s: deliberately worse fraud model v%s promoted over v%s",
                    day,
                    worse,
                    replaced,
                )
            phases["worse"] = time.perf_counter() - began
            set_clock(datetime.combine(day, clock_time(12), UTC))
            scorer.models = type(scorer.models).load(config)  # what the aliases name today
            decisions = score_day(scorer, purchases(sources, day))
            inference_log.flush()
            tomorrow = day + timedelta(days=1)
            set_clock(datetime.combine(tomorrow, clock_time(0, 30), UTC))
            defs.resolve_job_def("inference_log_maintenance").execute_in_process(instance=instance)
            phases["score"] = time.perf_counter() - began - sum(phases.values())
            set_clock(datetime.combine(tomorrow, clock_time(env.daily_hour_utc), UTC))
            tick = RunRequest(
                partition_key=day.isoformat(),
                tags={"dagster/schedule_name": "daily_features_schedule"},
            )
            execute(instance, tick, "daily_features", season, {"raw_sources": sources})
            phases["daily"] = time.perf_counter() - began - sum(phases.values())
            # The sensors' tick after the daily run, then (Monday) the 04:00 weekly retrain.
            set_clock(datetime.combine(tomorrow, clock_time(env.daily_hour_utc + 1), UTC))
            fired = evaluate_sensors(instance, cursors, season, sources)
            phases["sensors"] = time.perf_counter() - began - sum(phases.values())
            if tomorrow.weekday() == 0:  # Monday 04:00: the weekly retrain
                set_clock(datetime.combine(tomorrow, clock_time(4), UTC))
                weekly = RunRequest(tags={"dagster/schedule_name": "weekly_retrain"})
                execute(instance, weekly, "train_models", season)
            phases["weekly"] = time.perf_counter() - began - sum(phases.values())
            season.days.append(record_day(instance, lakehouse, day, decisions, fired))
            phases["record"] = time.perf_counter() - began - sum(phases.values())
            season.days[-1]["phases"] = phases
            print(format_day(season.days[-1]), flush=True)
    finally:
        inference_log.close()
        os.environ.pop("RISK_CLOCK", None)
    return season


def record_day(instance, lakehouse, day, decisions, fired) -> dict:
    """The day's facts: freshness as the freshness job judges it, what the online store
    serves, the newest drift and performance verdicts, the champions."""
    freshness = defs.resolve_job_def("freshness_checks").execute_in_process(instance=instance)
    checks = [
        e.event_specific_data
        for e in freshness.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    generation = online_store_from_environment().store(load_feature_set().version)
    serving = generation.current_generation(fresh=True)
    newest = newest_as_of_date(lakehouse)
    drift_meta, perf_meta = (newest_metadata(instance, key) for key in (DRIFT, PERFORMANCE))
    registry = ModelRegistry.from_settings()
    return {
        "day": day,
        "scored": sum(decisions.values()),
        "declined": decisions.get("decline", 0),
        "fresh": all(c.passed for c in checks) and len(checks) == len(FRESHNESS_CHECKS),
        "stale": [c.description for c in checks if not c.passed],
        "serving_as_of": serving.as_of.date() if serving else None,
        "newest_as_of": newest,
        "max_psi": float(drift_meta["max_psi"].value) if "max_psi" in drift_meta else None,
        "rollback": str(perf_meta["rollback/fraud"].value) if "rollback/fraud" in perf_meta else "",
        "champions": {t: registry.alias_version(n) for t, n in MODEL_NAMES.items()},
        "fired": fired,
    }


def newest_metadata(instance, key) -> dict:
    records = instance.fetch_materializations(key, limit=1).records
    return records[0].event_log_entry.asset_materialization.metadata if records else {}


def format_day(d: dict) -> str:
    psi = "-" if d["max_psi"] is None else f"{d['max_psi']:.2f}"
    champions = " ".join(f"{t} v{v}" for t, v in d["champions"].items())
    fired = ",".join(d["fired"]) or "-"
    rollback = f"  ROLLBACK {d['rollback']}" if d["rollback"].startswith("rolled back") else ""
    phases = " ".join(f"{k} {v:.0f}" for k, v in d["phases"].items() if v >= 0.5)
    return (
        f"{d['day']}  scored {d['scored']:>6,} (declined {d['declined']:>4})  "
        f"fresh {'yes' if d['fresh'] else 'NO '}  serving as_of {d['serving_as_of']}  "
        f"max PSI {psi:>5}  {champions}  sensors: {fired}  "
        f"{sum(d['phases'].values()):.0f} s ({phases}){rollback}"
    )


def check(season: Season, drift: bool = True) -> list[str]:
    """The season's promises; the problems found (none: it held). ``drift``: whether the season
    was long enough to hold drift; a worse release promoted in the season must be rolled back
    by the performance path (that version, by ``monitoring/realized_performance``)."""
    problems = []
    daily = [r for r in season.runs if r["job"] == "daily_features"]
    built = Counter(r["partition"] for r in daily if r["ok"])
    expected = [d["day"].isoformat() for d in season.days]
    if sorted(built) != sorted(expected) or any(n != 1 for n in built.values()):
        problems.append(f"partitions built {dict(built)}, expected each of {expected} once")
    problems += [f"{r['job']} {r['partition']} failed" for r in season.runs if not r["ok"]]
    for d in season.days:
        if not d["fresh"]:
            problems.append(f"{d['day']}: freshness red: {d['stale']}")
        if d["serving_as_of"] != d["newest_as_of"]:
            problems.append(
                f"{d['day']}: online store serves {d['serving_as_of']}, newest {d['newest_as_of']}"
            )
    drifted = [r for r in season.retrains if r["trigger"] == "drift"]
    if len(drifted) != (1 if drift else 0):
        problems.append(f"drift opened {len(drifted)} retrains (expected {int(drift)})")
    for retrain in drifted:
        for target in MODEL_NAMES:
            reason = retrain[target][1]
            if "after both models' validation weeks" not in reason:
                problems.append(
                    f"drift retrain's {target} gate did not judge on fair weeks: {reason}"
                )
    if season.worse:  # by the performance path: worse realized AUC on the same decisions
        demoted = f"rolled back v{season.worse['version']} -> v{season.worse['replaced']}: "
        if not any(d["rollback"].startswith(demoted + "realized AUC") for d in season.days):
            rollbacks = [f"{d['day']}: {d['rollback']}" for d in season.days if d["rollback"]]
            problems.append(
                f"the deliberately worse model v{season.worse['version']} (promoted "
                f"{season.worse['day']}) was never rolled back; fraud rollback verdicts: "
                f"{rollbacks[-3:]}"
            )
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=60, help="days of operation")
    parser.add_argument("--drift-day", type=int, default=30, help="first drifted day (offset)")
    parser.add_argument(
        "--worse-day",
        type=int,
        default=None,
        help="worse model promoted (offset; default: the season's first Monday after its first "
        "day)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    log.setLevel(logging.INFO)
    print("simulation settings (a chargeback's weeks compressed into days, so a release's ")
    print("decisions mature within its week): " + "; ".join(apply_simulation_settings()))
    began = time.perf_counter()
    season = simulate(args.days, args.drift_day, args.worse_day)
    problems = check(season, drift=args.drift_day < args.days)
    runs = Counter((r["job"], r["trigger"]) for r in season.runs)
    print(f"\n{len(season.days)} days in {time.perf_counter() - began:.0f} s; runs: {dict(runs)}")
    for retrain in season.retrains:
        print(
            f"  retrain ({retrain['trigger']}): " + json.dumps({t: retrain[t] for t in MODEL_NAMES})
        )
    if season.worse:
        print(
            f"  worse release: fraud v{season.worse['version']} over v{season.worse['replaced']} "
            f"on {season.worse['day']:%a %Y-%m-%d}"
        )
    for d in season.days:
        if d["rollback"].startswith("rolled back"):
            print(f"  rollback (realized_performance {d['day']}): {d['rollback']}")
    if problems:
        raise SystemExit("the season broke its promises:\n  " + "\n  ".join(problems))
    held = ["every partition built once, no gap", "freshness green every day"]
    held += ["the newest snapshot served every day", "no run failed"]
    if args.drift_day < args.days:
        held.append("drift opened exactly one retrain, judged on fair weeks")
    if season.worse:
        held.append(
            f"the worse model v{season.worse['version']} was rolled back on its realized AUC"
        )
    print("every promise held: " + "; ".join(held))


if __name__ == "__main__":
    main()
