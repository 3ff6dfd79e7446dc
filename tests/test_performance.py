"""Realized performance: the weekly metrics against a brute-force oracle from raw rows; the
asset on a real inference log, real labels and a real MLflow registry, rolling a worse champion
back (and serving picking the alias change up), or one that breaks its latency SLA; and the
performance sensor."""

import time
from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from dagster import (
    AssetMaterialization,
    DagsterInstance,
    RunRequest,
    SkipReason,
    build_sensor_context,
    materialize,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from assets.monitoring.performance import (
    DECISIONS,
    labelled_decisions,
    realized_auc,
    weekly_performance,
)

CUTOFF = datetime(2026, 6, 1, tzinfo=UTC)


def _oracle_auc(bad: list[int], score: list[float]) -> float | None:
    """P(a bad purchase outscores a good one), ties half: every pair, counted."""
    pos = [s for s, b in zip(score, bad, strict=True) if b]
    neg = [s for s, b in zip(score, bad, strict=True) if not b]
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


rows = st.lists(
    st.tuples(
        st.integers(0, 30),  # transaction (repeats: scored again)
        st.integers(0, 80),  # purchase: days before the cutoff
        st.integers(0, 3),  # scored this many hours after the purchase
        st.sampled_from([0.05, 0.3, 0.5, 0.7, 0.95]),  # score (ties on purpose)
        st.sampled_from(DECISIONS),
        st.sampled_from(["risk_fraud/1", "risk_fraud/2"]),
        st.sampled_from([None, 0.2, 0.8]),  # shadow score
        st.booleans(),  # held out: a would-be decline approved (when the decision is approve)
    ),
    min_size=1,
    max_size=60,
)
labels = st.lists(
    st.tuples(st.integers(0, 30), st.sampled_from(["fraud", "default"]), st.integers(-60, 10)),
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(rows=rows, labels=labels)
def test_weekly_performance_matches_a_brute_force_oracle(rows, labels):
    at = lambda days_before, hours=0: CUTOFF - timedelta(days=days_before) + timedelta(hours=hours)  # noqa: E731
    # A transaction's purchase time is its first row's; later rows are re-scorings.
    first_seen = {}
    for tx, days, *_ in rows:
        first_seen.setdefault(tx, days)
    log = pl.DataFrame(
        [
            {
                "transaction_id": f"t{tx}",
                "event_ts": at(first_seen[tx]),
                "scored_at": at(first_seen[tx], hours + i),
                "fraud_score": score,
                "decision": decision,
                "fraud_model": model,
                "model_kind": "behavioural",
                "shadow_fraud_score": shadow,
                "shadow_fraud_model": None if shadow is None else "risk_fraud/3",
                "holdout": held and decision == "approve",
                "holdout_weight": 20.0 if held and decision == "approve" else None,
            }
            for i, (tx, _, hours, score, decision, model, shadow, held) in enumerate(rows)
        ],
    )
    label_rows = pl.DataFrame(
        [
            {"transaction_id": f"t{tx}", "label": kind, "label_ts": CUTOFF + timedelta(days=d)}
            for tx, kind, d in labels
        ],
        schema={
            "transaction_id": pl.String,
            "label": pl.String,
            "label_ts": pl.Datetime("us", "UTC"),
        },
    )
    decisions = labelled_decisions(log, label_rows, "fraud", CUTOFF, 45)
    got = weekly_performance(decisions, "fraud", decline_at=0.6)

    # The oracle: plain loops over the raw rows.
    firsts = {}
    for r in sorted(log.to_dicts(), key=lambda r: r["scored_at"]):
        firsts.setdefault(r["transaction_id"], r)
    known_bad = {t for t, k, ts in label_rows.iter_rows() if k == "fraud" and ts < CUTOFF}
    groups: dict = {}
    for r in firsts.values():
        if r["event_ts"] > CUTOFF - timedelta(days=45):
            continue  # not matured
        week = r["event_ts"] - timedelta(days=r["event_ts"].weekday())
        week = week.replace(hour=0, minute=0, second=0, microsecond=0)
        bad = int(r["transaction_id"] in known_bad)
        groups.setdefault((week, "served", r["fraud_model"]), []).append(
            (r["fraud_score"], bad, r["decision"], r["holdout"])
        )
        if r["shadow_fraud_score"] is not None:
            groups.setdefault((week, "shadow", "risk_fraud/3"), []).append(
                (r["shadow_fraud_score"], bad, None, False)
            )
    assert got.height == len(groups)
    for row in got.iter_rows(named=True):
        members = groups[(row["week"], row["role"], row["model"])]
        scores, bads = [m[0] for m in members], [m[1] for m in members]
        assert row["rows"] == len(members) and row["bad"] == sum(bads)
        expected = _oracle_auc(bads, scores)
        assert (row["auc"] is None) == (expected is None)
        if expected is not None:
            assert row["auc"] == pytest.approx(expected)
        declined = [b for s, b in zip(scores, bads, strict=True) if s >= 0.6]
        assert row["precision_at_decline"] == (
            pytest.approx(sum(declined) / len(declined)) if declined else None
        )
        for d in DECISIONS:
            taken = [m[1] for m in members if m[2] == d]
            assert row[f"bad_rate_{d}"] == (
                pytest.approx(sum(taken) / len(taken)) if taken else None
            )
        if row["role"] == "shadow":
            continue
        # What production would see: no outcome behind a decline, the holdout weighted.
        held = [m[1] for m in members if m[3]]
        assert row["holdout_rows"] == len(held)
        assert row["bad_rate_behind_decline"] == (
            pytest.approx(sum(held) / len(held)) if held else None
        )
        ahead = [(m[0], m[1], 20.0 if m[3] else 1.0) for m in members if m[2] != "decline"]
        expected = _oracle_weighted_auc(ahead)
        assert (row["auc_observed"] is None) == (expected is None)
        if expected is not None:
            assert row["auc_observed"] == pytest.approx(expected)


def _oracle_weighted_auc(rows: list[tuple[float, int, float]]) -> float | None:
    """P(a bad purchase outscores a good one), each pair counted by its two weights."""
    pos = [(s, w) for s, b, w in rows if b]
    neg = [(s, w) for s, b, w in rows if not b]
    if not pos or not neg:
        return None
    wins = sum(wp * wn * ((p > n) + 0.5 * (p == n)) for p, wp in pos for n, wn in neg)
    return wins / (sum(w for _, w in pos) * sum(w for _, w in neg))


def test_a_held_out_decline_stands_for_every_decline_it_represents():
    """One bad approved purchase at 0.5; three good approved at 0.1 and one good would-be
    decline at 0.7 approved by a 5% holdout (weight 20): production's AUC counts that good
    purchase 20 times, 3 / 23; unweighted it would be 3 / 4."""
    week = datetime(2026, 4, 6, tzinfo=UTC)
    decisions = pl.DataFrame(
        {
            "week": [week] * 6,
            "fraud_model": ["risk_fraud/1"] * 6,
            "model_kind": ["behavioural"] * 6,
            "fraud_score": [0.1, 0.1, 0.1, 0.5, 0.7, 0.9],
            "bad": [0, 0, 0, 1, 0, 1],
            "decision": ["approve"] * 5 + ["decline"],
            "holdout": [False] * 4 + [True, False],
            "holdout_weight": [None] * 4 + [20.0, None],
        }
    )
    row = weekly_performance(decisions, "fraud", decline_at=0.6).row(0, named=True)
    assert row["auc_observed"] == pytest.approx(3 / 23)
    assert row["holdout_rows"] == 1 and row["bad_rate_behind_decline"] == 0.0


def test_realized_auc_needs_both_classes():
    assert realized_auc(np.array([0, 0]), np.array([0.1, 0.2])) is None
    assert realized_auc(np.array([0, 1]), np.array([0.1, 0.2])) == 1.0


# --- the asset, on a real log, real labels and a real registry --------------------------------


def _log(
    env,
    tmp_path,
    model_label: str,
    scores: np.ndarray,
    rows: pa.Table,
    *,
    shift: timedelta = timedelta(0),
    inference_ms: float = 0.05,
) -> str:
    """The inference log serving would have written for ``rows`` (training rows: their input
    vectors) decided by ``model_label`` with ``scores``, through serving's own row format."""
    from deltalake import write_deltalake

    from assets.training.models import matrix
    from riskcore.registry import ModelRegistry
    from riskcore.timestamps import micros
    from serving.inference_log import LogRow, to_table

    spec = ModelRegistry(env.tracking_uri).load_bundle(*model_label.split("/")).behavioural.spec
    vectors = matrix(rows, spec)
    log_rows = []
    for r, s, v in zip(rows.to_pylist(), scores, vectors, strict=True):
        at = r["event_ts"] + shift
        log_rows.append(
            LogRow(
                transaction_id=r["transaction_id"],
                customer_hash="h",
                event_ts=micros(at),
                scored_at=micros(at + timedelta(seconds=1)),
                decision="approve",
                fraud_score=float(s),
                default_score=None,
                fraud_model=model_label,
                default_model=None,
                model_kind="behavioural",
                feature_set_version=spec.feature_set_version,
                features_as_of=None,
                feature_source="online",
                lookup_ms=0.1,
                inference_ms=inference_ms,
                total_ms=0.3,
                feature_names=spec.feature_names,
                vector=v,
            )
        )
    uri = str(tmp_path / "inference_log")
    write_deltalake(uri, to_table(log_rows), mode="append", partition_by=["scored_date"])
    return uri


def _worse_champion(env, tmp_path) -> tuple[str, str]:
    """A fraud version trained on shuffled labels, made champion over the current one as a gate
    would (tagged with the version it replaced). Returns (previous, worse)."""
    import pyarrow.compute as pc
    from mlflow import MlflowClient

    from riskcore.registry import REPLACES
    from tests import serving_env

    registry = MlflowClient(env.tracking_uri)
    previous = str(registry.get_model_version_by_alias("risk_fraud", "champion").version)
    shuffled = np.random.default_rng(3).permutation(
        env.training["fraud_label"].to_numpy(zero_copy_only=False)
    )
    noisy = env.training.set_column(
        env.training.schema.get_field_index("fraud_label"),
        "fraud_label",
        pa.array(shuffled, env.training.schema.field("fraud_label").type),
    )
    worse = serving_env.register(noisy, env.feature_set, env.tracking_uri, tmp_path, "fraud")
    registry.set_registered_model_alias("risk_fraud", "champion", worse)
    registry.set_model_version_tag("risk_fraud", worse, REPLACES, previous)
    assert pc.sum(env.training["fraud_label"]).as_py() > 20
    return previous, worse


def _materialize(env, monkeypatch, log_uri: str, **config):
    from assets.monitoring.assets import realized_performance

    monkeypatch.setenv("RISK_INFERENCE_LOG_URI", log_uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", env.tracking_uri)
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            [realized_performance],
            partition_key=(CUTOFF.date() - timedelta(days=1)).isoformat(),
            instance=instance,
            resources={"lakehouse": env.lakehouse},
            run_config={"ops": {"monitoring__realized_performance": {"config": config}}},
        )
    event = result.asset_materializations_for_node("monitoring__realized_performance")[0]
    return {k: v.value for k, v in event.metadata.items()}


def _known_rows(env) -> pa.Table:
    import pyarrow.compute as pc

    return env.training.filter(pc.fill_null(env.training["customer_known"], False))


@pytest.mark.integration
def test_a_champion_worse_than_the_one_it_replaced_is_rolled_back(env, monkeypatch, tmp_path):
    """Same matured decisions, realized AUC of the shuffled-label champion far below its
    predecessor's rescoring of the logged vectors: the alias moves back, the reason is in the
    metadata and on the demoted version, and a serving app polling the aliases swaps back."""
    from fastapi.testclient import TestClient
    from mlflow import MlflowClient

    from assets.training.models import matrix
    from riskcore.registry import ROLLED_BACK, ModelRegistry
    from serving.app import create_app

    previous, worse = _worse_champion(env, tmp_path)
    registry = MlflowClient(env.tracking_uri)
    try:
        rows = _known_rows(env)
        bad_model = ModelRegistry(env.tracking_uri).load_bundle("risk_fraud", worse).behavioural

        log_uri = _log(
            env,
            tmp_path,
            f"risk_fraud/{worse}",
            bad_model.predict(matrix(rows, bad_model.spec)),
            rows,
        )
        app = create_app(env.config(inference_log_uri="", alias_poll_s=0.1))
        with TestClient(app) as client:
            assert client.app.state.scorer.models.champions["fraud"].version == worse
            measured = _materialize(env, monkeypatch, log_uri, min_rows=100, min_bad=5)
            reason = measured["rollback/fraud"]
            assert reason.startswith(f"rolled back v{worse} -> v{previous}: realized AUC"), reason
            assert (
                str(registry.get_model_version_by_alias("risk_fraud", "champion").version)
                == previous
            )
            tags = registry.get_model_version("risk_fraud", worse).tags
            assert "realized AUC" in tags[ROLLED_BACK]
            # The performance sensor's signal: test AUC minus the newest judged week's.
            drop = measured["auc_test/fraud"] - measured["auc/fraud"]
            assert measured["auc_drop/fraud"] == pytest.approx(drop)
            assert measured["rollback/default"] in {"none", "none (the first champion)"}
            deadline = datetime.now(UTC) + timedelta(seconds=20)
            while client.app.state.scorer.models.champions["fraud"].version != previous:
                assert datetime.now(UTC) < deadline, "serving did not pick the rollback up"
                time.sleep(0.1)
        stored = pl.read_delta(env.lakehouse.uri("monitoring/realized_performance"))
        served = stored.filter((pl.col("role") == "served") & (pl.col("target") == "fraud"))
        assert served["rows"].sum() == rows.num_rows and set(served["model"]) == {
            f"risk_fraud/{worse}"
        }
    finally:
        registry.set_registered_model_alias("risk_fraud", "champion", "1")


@pytest.mark.integration
def test_an_equal_champion_stays_and_rollback_can_be_turned_off(env, monkeypatch, tmp_path):
    from mlflow import MlflowClient

    from assets.training.models import matrix
    from riskcore.registry import REPLACES, ModelRegistry

    registry = MlflowClient(env.tracking_uri)
    previous, worse = _worse_champion(env, tmp_path)
    try:
        rows = _known_rows(env)
        good = ModelRegistry(env.tracking_uri).load_bundle("risk_fraud", previous).behavioural
        # The previous version promoted again, replacing itself: same AUC, nothing to do.
        registry.set_registered_model_alias("risk_fraud", "champion", previous)
        registry.set_model_version_tag("risk_fraud", previous, REPLACES, previous)
        log_uri = _log(
            env, tmp_path, f"risk_fraud/{previous}", good.predict(matrix(rows, good.spec)), rows
        )
        kept = _materialize(env, monkeypatch, log_uri, min_rows=100, min_bad=5)
        assert kept["rollback/fraud"] == "none", kept["rollback/fraud"]
        assert "realized AUC" in kept["compared/fraud"]

        bad = ModelRegistry(env.tracking_uri).load_bundle("risk_fraud", worse).behavioural
        registry.set_registered_model_alias("risk_fraud", "champion", worse)
        log_uri = _log(
            env,
            tmp_path / "second",
            f"risk_fraud/{worse}",
            bad.predict(matrix(rows, bad.spec)),
            rows,
        )
        dry = _materialize(env, monkeypatch, log_uri, min_rows=100, min_bad=5, rollback=False)
        assert dry["rollback/fraud"].startswith("would roll back")
        assert str(registry.get_model_version_by_alias("risk_fraud", "champion").version) == worse
    finally:
        registry.set_registered_model_alias("risk_fraud", "champion", "1")
        registry.delete_model_version_tag("risk_fraud", previous, REPLACES)


@pytest.mark.integration
def test_a_champion_over_its_latency_sla_is_rolled_back(env, monkeypatch, tmp_path):
    from mlflow import MlflowClient

    from assets.training.models import matrix
    from riskcore.registry import ModelRegistry

    registry = MlflowClient(env.tracking_uri)
    previous, worse = _worse_champion(env, tmp_path)
    try:
        rows = _known_rows(env).slice(0, 400)
        model = ModelRegistry(env.tracking_uri).load_bundle("risk_fraud", worse).behavioural
        scores = model.predict(matrix(rows, model.spec))
        # Its decisions of the last days before the as_of took 40 ms of inference each.
        recent = CUTOFF - timedelta(days=3) - rows["event_ts"][0].as_py()
        log_uri = _log(
            env, tmp_path, f"risk_fraud/{worse}", scores, rows, shift=recent, inference_ms=40.0
        )
        measured = _materialize(env, monkeypatch, log_uri, model_p95_sla_ms=10.0)
        assert measured["p95_inference_ms/fraud"] == pytest.approx(40.0)
        assert "model inference p95 40.00 ms > SLA 10 ms" in measured["rollback/fraud"]
        assert (
            str(registry.get_model_version_by_alias("risk_fraud", "champion").version) == previous
        )
    finally:
        registry.set_registered_model_alias("risk_fraud", "champion", "1")


# --- the performance sensor ---------------------------------------------------------------------


def test_a_realized_auc_drop_opens_a_retrain():
    from sensors.drift import PERFORMANCE, build_performance_sensor
    from tests.test_drift import train_models  # a stand-in job named like the real one

    sensor = build_performance_sensor(train_models)
    with DagsterInstance.ephemeral() as instance:

        def tick(cursor=None, **drops):
            metadata = {
                "as_of": date(2026, 6, 1).isoformat(),
                **{f"auc_drop/{t}": v for t, v in drops.items()},
            }
            instance.report_runless_asset_event(
                AssetMaterialization(PERFORMANCE, metadata=metadata)
            )
            context = build_sensor_context(instance=instance, cursor=cursor)
            return sensor(context), context.cursor

        quiet, cursor = tick(fraud=0.01, default=0.03)
        assert isinstance(quiet, SkipReason) and "warning: {'default': 0.03}" in quiet.skip_message
        run, cursor = tick(cursor, fraud=0.08)
        assert isinstance(run, RunRequest) and run.tags["risk/trigger"] == "performance"
        assert run.tags["risk/auc_drop"] == "fraud=0.080"
        again, _ = tick(cursor, fraud=0.09)
        assert isinstance(again, SkipReason) and "cooldown" in again.skip_message


def test_delongs_auc_is_sklearns_with_ties_and_its_bound_covers_the_bootstrap():
    from sklearn.metrics import roc_auc_score

    from assets.monitoring.performance import _delong_components, auc_gap_bound

    rng = np.random.default_rng(3)
    y = rng.random(2_000) < 0.05
    a = rng.integers(0, 20, 2_000) + 3.0 * y  # many ties
    b = a + rng.normal(0, 4, 2_000)
    assert _delong_components(y, a)[0] == pytest.approx(roc_auc_score(y, a))
    gaps = []  # a paired bootstrap of the same gap: DeLong's 99% bound sits near its 99th pct
    for _ in range(300):
        pick = np.concatenate(
            [rng.choice(np.flatnonzero(y), y.sum()), rng.choice(np.flatnonzero(~y), (~y).sum())]
        )
        gaps.append(roc_auc_score(y[pick], a[pick]) - roc_auc_score(y[pick], b[pick]))
    assert auc_gap_bound(y, a, b) == pytest.approx(np.quantile(gaps, 0.99), abs=0.02)


def _scores(rng, y, noise):
    return y * 1.5 + rng.normal(0, noise, len(y))


def test_a_dozen_bad_outcomes_do_not_roll_back_an_equal_model():
    """Two models of the same quality: on 13 bad outcomes among 12,000 the champion's realized
    AUC can trail by more than the 0.01 margin from noise alone; the bound says so."""
    from assets.monitoring.performance import auc_gap_bound

    y = np.zeros(12_000, bool)
    y[:13] = True
    for seed in range(200):  # a draw where noise alone puts the champion 0.01 behind
        rng = np.random.default_rng(seed)
        champion, previous = _scores(rng, y, 1.0), _scores(rng, y, 1.0)
        if realized_auc(y, champion) < realized_auc(y, previous) - 0.01:
            break
    else:
        pytest.fail("no noisy draw found")
    assert auc_gap_bound(y, champion, previous) > -0.01


def test_a_much_worse_model_is_surely_worse_on_a_dozen_bad_outcomes():
    from assets.monitoring.performance import auc_gap_bound

    rng = np.random.default_rng(1)
    y = np.zeros(4_000, bool)
    y[:12] = True
    previous, shuffled = _scores(rng, y, 1.0), rng.normal(0, 1, len(y))
    assert realized_auc(y, shuffled) < realized_auc(y, previous) - 0.2
    assert auc_gap_bound(y, shuffled, previous) < -0.01
    many = np.zeros(20_000, bool)
    many[:400] = True  # with many bad outcomes a real gap of a few hundredths is sure
    assert auc_gap_bound(many, _scores(rng, many, 1.3), _scores(rng, many, 1.0)) < -0.01
