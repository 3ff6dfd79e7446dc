"""The feature registry comes from the dbt manifest, and its version follows the definitions."""

import copy
import json
from datetime import date

import duckdb
import pytest

from featurestore.registry import (
    ENTITY_MARTS,
    MANIFEST,
    MART,
    feature_set_from_manifest,
    load_feature_set,
    manifest_is_stale,
)
from tests.compiled_models import DATABASE, MODELS, compile_models


@pytest.fixture(scope="module")
def manifest():
    import assets.features.dbt  # noqa: F401  (parses the project when the manifest is stale)

    return json.loads(MANIFEST.read_text())


def test_the_manifest_is_current_and_lists_every_feature(manifest):
    assert not manifest_is_stale()
    fs = load_feature_set()
    names = [c.name for c in fs.features]
    assert len(names) == len(set(names)) >= 37
    assert {"txn_count_7d", "amount_std_90d", "new_device_ratio_7d", "lifecycle_stage"} <= set(
        names
    )
    assert [c.name for c in fs.context] == ["home_country", "known_devices"]
    assert all(c.description and c.data_type for c in fs.columns)
    assert fs.version.startswith("fs_")


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m["macros"]["macro.risk_features.in_window"].update(macro_sql="changed"),
        lambda m: m["nodes"]["model.risk_features.int_customer_days_rolled_up"]["checksum"].update(
            checksum="changed"
        ),
        lambda m: m["nodes"]["model.risk_features.fct_customer_features_daily"]["columns"][
            "amount_mean_7d"
        ].update(data_type="float"),
        lambda m: m["nodes"]["model.risk_features.fct_customer_features_daily"]["columns"].pop(
            "night_ratio_30d"
        ),
        lambda m: m["nodes"]["model.risk_features.fct_customer_features_daily"]["columns"][
            "lifecycle_stage"
        ]["meta"]["categories"].append("churned"),
    ],
    ids=["macro", "upstream model", "column type", "column removed", "vocabulary"],
)
def test_any_change_to_the_definitions_changes_the_version(manifest, edit):
    changed = copy.deepcopy(manifest)
    edit(changed)
    assert feature_set_from_manifest(changed).version != feature_set_from_manifest(manifest).version


def test_documentation_changes_keep_the_version(manifest):
    changed = copy.deepcopy(manifest)
    mart = changed["nodes"]["model.risk_features.fct_customer_features_daily"]
    mart["columns"]["txn_count_7d"]["description"] = "reworded"
    assert feature_set_from_manifest(changed).version == feature_set_from_manifest(manifest).version


def test_the_sql_outputs_exactly_the_documented_columns(tmp_path):
    """The yml is the registry: the mart's SQL must produce exactly its columns and types."""
    compiled = compile_models(tmp_path, date(2026, 3, 1), date(2026, 3, 1))
    con = duckdb.connect()
    con.execute(f"attach ':memory:' as {DATABASE}; use {DATABASE}")
    con.execute(
        "create table stg_raw__transactions (transaction_id varchar, customer_id varchar, "
        "event_ts timestamptz, event_date date, amount decimal(18,2), merchant_category varchar, "
        "channel varchar, device_id varchar, country varchar, installments smallint, "
        "merchant_id varchar, card_hash varchar)"
    )
    con.execute(
        "create table stg_raw__labels (transaction_id varchar, label varchar, "
        "label_ts timestamptz, label_date date)"
    )
    con.execute("create table category_risk (merchant_category varchar, risk_tier varchar)")
    for model in MODELS:
        con.execute(f"create table {model} as {compiled[model]}")
    normalise = {
        "decimal(18,2)": "DECIMAL(18,2)",
        "timestamp with time zone": "TIMESTAMP WITH TIME ZONE",
    }
    for entity, mart in {"customer": MART, **ENTITY_MARTS}.items():  # every entity's
        built = con.sql(f"describe {mart}").fetchall()
        documented = [(c.name, c.data_type) for c in load_feature_set(entity=entity).columns]
        assert [(n, t) for n, t, *_ in built] == [
            (n, normalise.get(t, t.upper())) for n, t in documented
        ], mart
