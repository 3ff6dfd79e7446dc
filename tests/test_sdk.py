"""The feature-store SDK (featurestore/): point-in-time features for any entity rows, against a
brute-force oracle on real Delta snapshots (duplicates, unsorted rows, availability boundaries
+-1 us, unknown customers, time zones, a late online load), equal to the training set's rows
for the same purchases, and its errors."""

import json
import math
import warnings
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from click.testing import CliRunner
from deltalake import DeltaTable
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from assets.training.dataset import TRANSACTION_COLUMNS, TrainingWindow, build_training_set
from featurestore import (
    FeatureStoreError,
    FeatureStoreWarning,
    historical_features,
    online_features,
    store_status,
)
from featurestore.__main__ import cli
from featurestore.catalog import feature, features
from featurestore.historical import ADDED
from featurestore.registry import load_feature_set
from resources.dbt_cli import DBT_PROJECT_DIR
from resources.lakehouse import (
    CUSTOMER_FEATURES,
    ENTITY_FEATURES,
    LABELS,
    ONLINE_LOADS,
    TRANSACTIONS,
    Lakehouse,
)
from resources.local_redis import LocalRedis
from riskcore.codec import with_digests
from riskcore.online_store import OnlineStore
from tests.snapshot_tables import snapshot_table

DAYS = [date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 4)]  # 3 March is missing
LATE = date(2026, 3, 2)  # its online load ended at 09:00, after as_of + lag (06:00)
LATE_AT = datetime(2026, 3, 2, 9, tzinfo=UTC)
LAG = timedelta(hours=6)
US = timedelta(microseconds=1)
CUSTOMERS = 40  # c000000000 ... c000000039 in each partition, minus a few per day


def _midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


@pytest.fixture(scope="module")
def lakehouse(tmp_path_factory, feature_set):
    lakehouse = Lakehouse(root_uri=str(tmp_path_factory.mktemp("sdk") / "lakehouse"))
    for i, day in enumerate(DAYS):
        snapshot = snapshot_table(feature_set, CUSTOMERS, day, seed=i)
        absent = pa.array([f"c{n:09d}" for n in range(i, CUSTOMERS, 7)])  # some leave a day
        snapshot = snapshot.filter(pc.invert(pc.is_in(snapshot["customer_id"], absent)))
        lakehouse.replace_partitions(
            CUSTOMER_FEATURES, snapshot, ["as_of_date"], f"as_of_date = '{day}'"
        )
    ts = pa.timestamp("us", "UTC")
    loads = pa.table(
        {
            "as_of": pa.array([_midnight(LATE)], ts),
            "available_at": pa.array([LATE_AT], ts),
        }
    )
    lakehouse.replace_day(ONLINE_LOADS, loads, "as_of_date", LATE)
    return lakehouse


@pytest.fixture(scope="module")
def snapshots(lakehouse) -> dict[tuple[date, str], dict]:
    rows = lakehouse.dataset(CUSTOMER_FEATURES).to_table().to_pylist()
    return {(r["as_of"].date(), r["customer_id"]): r for r in rows}


def oracle(rows: list[dict], snapshots: dict, names: list[str], kinds: dict) -> list[dict]:
    """For each row, in plain Python: the partition available last at its moment (as_of + lag,
    or the recorded load if later), and the customer's row in it, numbers as float32."""
    available = {d: max(_midnight(d) + LAG, LATE_AT if d == LATE else _midnight(d)) for d in DAYS}
    out = []
    for row in rows:
        at = row["at"].astimezone(UTC) if row["at"].tzinfo else row["at"].replace(tzinfo=UTC)
        usable = [d for d in DAYS if available[d] <= at]
        chosen = max(usable, key=lambda d: available[d]) if usable else None
        found = snapshots.get((chosen, row["customer_id"]))
        values = {}
        for name in names:
            value = None if found is None else found[name]
            if kinds[name] == "numeric":
                value = math.nan if value is None else float(np.float32(float(value)))
            values[name] = value
        out.append(
            {
                "snapshot_as_of": _midnight(chosen) if chosen else None,
                "customer_known": found is not None,
                **values,
            }
        )
    return out


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    return a == b


ZONES = [UTC, ZoneInfo("America/New_York"), ZoneInfo("Asia/Kolkata"), None]  # None: naive


@st.composite
def entity_rows(draw):
    edges = [
        when + delta
        for d in DAYS
        for when in {_midnight(d) + LAG, LATE_AT if d == LATE else _midnight(d) + LAG}
        for delta in (-US, timedelta(0), US)
    ]
    moments = st.one_of(
        st.sampled_from(edges),
        st.integers(-86_400, 6 * 86_400).map(lambda s: _midnight(DAYS[0]) + timedelta(seconds=s)),
    )
    n = draw(st.integers(1, 30))
    zone = draw(st.sampled_from(ZONES))
    rows = []
    for i in range(n):
        at = draw(moments)
        customer = draw(st.integers(0, CUSTOMERS + 5))  # some never in any snapshot
        rows.append(
            {
                "customer_id": f"c{customer:09d}",
                "at": at.astimezone(zone).replace(tzinfo=None)
                if zone is None
                else at.astimezone(zone),
                "row_label": f"r{i}",
            }
        )
    if draw(st.booleans()) and rows:  # duplicates
        rows += rows[: draw(st.integers(1, len(rows)))]
    return rows, zone


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(entity_rows(), st.sampled_from(["pandas", "polars", "arrow"]))
def test_historical_features_equal_the_oracle(lakehouse, snapshots, feature_set, drawn, kind):
    rows, zone = drawn
    names = [c.name for c in feature_set.features[:4]] + [feature_set.context[0].name]
    kinds = {c.name: c.kind for c in feature_set.columns}
    timestamp = pa.timestamp("us", None if zone is None else str(zone))
    table = pa.table(
        {
            "customer_id": [r["customer_id"] for r in rows],
            "at": pa.array([r["at"] for r in rows], timestamp),
            "row_label": [r["row_label"] for r in rows],
        }
    )
    entities = {"pandas": table.to_pandas(), "polars": pl.from_arrow(table), "arrow": table}[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FeatureStoreWarning)
        got = historical_features(
            entities, names, timestamp_column="at", lag=LAG, lakehouse=lakehouse
        )
    out = _rows(got)
    assert list(out[0]) == ["customer_id", "at", "row_label", *ADDED, *names]
    assert [{k: r[k] for k in ("customer_id", "at", "row_label")} for r in out] == [
        {**r, "at": r["at"]} for r in table.to_pylist()
    ]  # the entity columns untouched, in the same order
    expected = oracle(rows, snapshots, names, kinds)
    for i, (g, e) in enumerate(zip(out, expected, strict=True)):
        assert g["snapshot_as_of"] == e["snapshot_as_of"], (i, rows[i])
        assert g["customer_known"] == e["customer_known"], (i, rows[i])
        for name in names:
            assert _same(g[name], e[name]), (i, name, g[name], e[name])


def _rows(frame) -> list[dict]:
    """A result's rows as plain Python, whatever the frame (pandas: NaT as None, arrays as
    lists, timestamps as datetimes)."""
    if isinstance(frame, pa.Table):
        return frame.to_pylist()
    if isinstance(frame, pl.DataFrame):
        return frame.to_dicts()
    plain = lambda v: (  # noqa: E731
        None
        if v is pd.NaT
        else v.to_pydatetime()
        if isinstance(v, pd.Timestamp)
        else list(v)
        if isinstance(v, np.ndarray)
        else v
    )
    return [{k: plain(v) for k, v in r.items()} for r in frame.to_dict("records")]


def test_the_training_set_rows_equal_the_sdk_rows(tmp_path, lakehouse, feature_set):
    """The training set's snapshot features for its purchases are the SDK's for the same
    (customer, moment): one road."""
    own = Lakehouse(root_uri=str(tmp_path / "lakehouse"))
    for day in DAYS:
        snapshot = lakehouse.dataset(CUSTOMER_FEATURES).to_table(
            filter=pc.field("as_of_date") == day
        )
        own.replace_partitions(CUSTOMER_FEATURES, snapshot, ["as_of_date"], f"as_of_date = '{day}'")
    loads = lakehouse.dataset(ONLINE_LOADS).to_table().drop_columns(["as_of_date"])
    own.replace_day(ONLINE_LOADS, loads, "as_of_date", LATE)
    rng = np.random.default_rng(5)
    n = 300
    purchases = pa.table(
        {
            "transaction_id": [f"t{i}" for i in range(n)],
            "customer_id": [f"c{i:09d}" for i in rng.integers(0, CUSTOMERS + 5, n)],
            "event_ts": pa.array(
                [
                    _midnight(DAYS[0]) + timedelta(minutes=int(m))
                    for m in rng.integers(0, 4 * 1440, n)
                ],
                pa.timestamp("us", "UTC"),
            ),
            "amount": pa.array([f"{a:.2f}" for a in rng.lognormal(3, 1, n)]).cast(
                pa.decimal128(18, 2)
            ),
            "merchant_id": rng.choice(["m1", "m2"], n),
            "merchant_category": rng.choice(["grocery", "crypto", "travel"], n),
            "channel": rng.choice(["online", "pos", "app"], n),
            "device_id": rng.choice(["dev-1", None, "dev-2"], n),
            "card_hash": ["ab" * 32] * n,
            "country": rng.choice(["US", "DE"], n),
            "installments": pa.array(rng.choice([1, 3], n), pa.int16()),
        }
    )
    purchases = purchases.append_column("event_date", pc.cast(purchases["event_ts"], pa.date32()))
    for day in sorted(set(purchases["event_date"].to_pylist())):
        own.replace_day(
            TRANSACTIONS,
            purchases.filter(pc.field("event_date") == day).drop_columns(["event_date"]),
            "event_date",
            day,
        )
    labels = pa.table(
        {
            "transaction_id": ["t1"],
            "label": ["fraud"],
            "label_ts": pa.array(
                [_midnight(DAYS[-1]) + timedelta(days=3)], pa.timestamp("us", "UTC")
            ),
        }
    )
    own.replace_day(LABELS, labels, "label_date", date(2026, 3, 7))
    window = TrainingWindow(DAYS[0], date(2026, 3, 4), _midnight(DAYS[0]) + timedelta(days=60), LAG)
    training = build_training_set(own, feature_set, window)
    entities = pl.from_arrow(purchases.select(TRANSACTION_COLUMNS))
    sdk = historical_features(entities, lag=LAG, lakehouse=own).to_arrow()
    trained = {r["transaction_id"]: r for r in training.to_pylist()}
    assert len(trained) == n and sdk.num_rows == n
    checked = 0
    for row in sdk.to_pylist():
        t = trained[row["transaction_id"]]
        assert row["customer_known"] == t["customer_known"]
        assert row["snapshot_as_of"] == t["snapshot_as_of"]
        for column in feature_set.features:
            value = row[column.name]
            if column.categories is not None:
                value = math.nan if value is None else float(column.categories.index(value))
            assert _same(float(value), float(t[column.name])), (row["transaction_id"], column.name)
        checked += row["customer_known"]
    assert checked > 100


def _entities(feature_set, **columns):
    base = {
        "customer_id": ["c000000002"],  # in the 2 March partition (c000000001 is not)
        "event_ts": pa.array([datetime(2026, 3, 2, 12, tzinfo=UTC)], pa.timestamp("us", "UTC")),
    }
    return pa.table(base | columns)


def test_an_unknown_feature_is_named_with_the_closest_known(lakehouse, feature_set):
    known = feature_set.features[0].name
    with pytest.raises(FeatureStoreError, match=rf"'{known}x'.*did you mean {known}"):
        historical_features(_entities(feature_set), [known + "x"], lakehouse=lakehouse)


def test_a_missing_or_mistyped_timestamp_column_is_named(lakehouse, feature_set):
    with pytest.raises(FeatureStoreError, match=r"no .ts. column.*timestamp_column"):
        historical_features(_entities(feature_set), timestamp_column="ts", lakehouse=lakehouse)
    text = pa.table({"customer_id": ["c1"], "event_ts": ["2026-03-02 12:00"]})
    with pytest.raises(FeatureStoreError, match=r"must be a timestamp.*not string"):
        historical_features(text, lakehouse=lakehouse)
    clash = _entities(feature_set, customer_known=[True])
    with pytest.raises(FeatureStoreError, match=r"already have column.*customer_known"):
        historical_features(clash, lakehouse=lakehouse)


def test_naive_and_early_timestamps_are_warned_about(lakehouse, feature_set):
    naive = pa.table(
        {
            "customer_id": ["c000000001"],
            "event_ts": pa.array([datetime(2026, 2, 1)], pa.timestamp("us")),
        }
    )
    with pytest.warns(FeatureStoreWarning) as caught:
        got = historical_features(naive, lakehouse=lakehouse)
    messages = " ".join(str(w.message) for w in caught)
    assert "taken as UTC" in messages and "before the first available snapshot" in messages
    assert got["customer_known"].to_pylist() == [False]
    assert got["snapshot_as_of"].to_pylist() == [None]


def test_file_in_file_out_streams_the_same_rows(tmp_path, lakehouse, feature_set):
    rng = np.random.default_rng(1)
    n = 5_000
    table = pa.table(
        {
            "customer_id": [f"c{i:09d}" for i in rng.integers(0, CUSTOMERS, n)],
            "event_ts": pa.array(
                [
                    _midnight(DAYS[0]) + timedelta(seconds=int(s))
                    for s in rng.integers(0, 5 * 86_400, n)
                ],
                pa.timestamp("us", "UTC"),
            ),
            "n": np.arange(n),
        }
    )
    source = tmp_path / "entities.parquet"
    import pyarrow.parquet as pq

    pq.write_table(table, source, row_group_size=700)
    in_memory = historical_features(table, lag=LAG, lakehouse=lakehouse)
    seen = []
    written = historical_features(
        source, lag=LAG, lakehouse=lakehouse, output=tmp_path / "out.parquet", progress=seen.append
    )
    assert written.rows == n and sum(seen) == n and written.format == "parquet"
    same = lambda a, b: assert_frame_equal(pl.from_arrow(a), pl.from_arrow(b))  # noqa: E731
    same(pq.read_table(tmp_path / "out.parquet"), in_memory)
    delta = historical_features(source, lag=LAG, lakehouse=lakehouse, output=tmp_path / "out_delta")
    assert delta.format == "delta"
    got = DeltaTable(str(tmp_path / "out_delta")).to_pyarrow_table().sort_by("n")
    same(got, in_memory)
    from_path = historical_features(source, lag=LAG, lakehouse=lakehouse)
    same(from_path.to_arrow(), in_memory)


def test_the_catalog_describes_each_feature(feature_set):
    listed = features()
    assert [f.name for f in listed][: len(feature_set.features)] == [
        c.name for c in feature_set.features
    ]
    one = feature(feature_set.features[0].name)
    assert one.description and one.feature_set_version == feature_set.version
    assert one.dbt_model.startswith(("fct_", "int_", "stg_"))
    with pytest.raises(FeatureStoreError, match="did you mean"):
        feature(feature_set.features[0].name[:-1])
    # The other entities' features, under the names historical_features takes
    device = feature("device_distinct_customers_7d")
    assert device.entity == "device" and device.dbt_model == "fct_device_features_daily"
    assert (DBT_PROJECT_DIR.parent / device.sql).is_file()
    assert {f.entity for f in listed} == {"customer", "device", "merchant", "card"}
    with pytest.raises(FeatureStoreError, match="unknown device feature"):
        feature("device_distinct_customer")


def test_an_output_that_is_the_input_is_refused_and_the_input_kept(
    tmp_path, lakehouse, feature_set
):
    """Writing where the rows are read from would truncate them mid-read."""
    import pyarrow.parquet as pq

    path = tmp_path / "rows.parquet"
    pq.write_table(_entities(feature_set), path)
    for output in (path, tmp_path):
        with pytest.raises(FeatureStoreError, match="where the entity rows are read from"):
            historical_features(path, lakehouse=lakehouse, output=output, overwrite=True)
    with pytest.raises(FeatureStoreError, match="where the entity rows are read from"):
        historical_features(tmp_path, lakehouse=lakehouse, output=path, overwrite=True)
    assert pq.read_table(path).num_rows == 1
    historical_features(path, lakehouse=lakehouse, output=tmp_path / "out.parquet")
    historical_features(path, lakehouse=lakehouse, output=tmp_path / "out.parquet", overwrite=True)
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []


def test_rows_long_after_the_newest_snapshot_are_warned_about(lakehouse, feature_set):
    newest = max(DAYS)
    rows = pl.DataFrame(
        {
            "customer_id": ["c000000001"] * 3,
            "event_ts": [
                _midnight(newest) + LAG + timedelta(days=1),  # a day late: the next is due
                _midnight(newest) + LAG + timedelta(days=1) + US,
                _midnight(DAYS[0]) - timedelta(days=3),
            ],
        }
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        historical_features(rows, lakehouse=lakehouse, lag=LAG)
    messages = [str(w.message) for w in caught]
    assert any(m.startswith("1 entity row(s) come more than 1 day(s)") for m in messages)
    assert any(f"as_of {newest}" in m for m in messages)
    assert any(f"before the first available snapshot (as_of {DAYS[0]}" in m for m in messages)


@pytest.mark.integration
def test_online_features_and_status_read_the_serving_generation(tmp_path, monkeypatch, feature_set):
    snapshot = snapshot_table(feature_set, 50, DAYS[0])
    with LocalRedis(tmp_path / "redis") as server:
        monkeypatch.setenv("REDIS_URL", server.url)
        OnlineStore(server.client(), feature_set.version).write_generation(
            [with_digests(snapshot)],
            feature_set=feature_set,
            as_of=_midnight(DAYS[0]),
            customers=50,
        )
        names = [feature_set.features[0].name, "lifecycle_stage", feature_set.context[0].name]
        got = online_features(["c000000003", "nobody"], names).to_dicts()
        expected = snapshot.filter(pc.field("customer_id") == "c000000003").to_pylist()[0]
        assert got[0]["source"] == "online" and got[0]["as_of"] == _midnight(DAYS[0])
        assert got[0][names[0]] == float(np.float32(float(expected[names[0]])))
        assert got[0]["lifecycle_stage"] == expected["lifecycle_stage"]
        assert got[1]["source"] == "unknown_customer" and math.isnan(got[1][names[0]])
        status = store_status()
        assert status["serving"]["customers"] == 50 and status["pinned"] is None
        shown = CliRunner().invoke(cli, ["online", "c000000003", "nobody", "--features", names[0]])
        assert shown.exit_code == 0 and '"source": "online"' in shown.output
        lines = [json.loads(line) for line in shown.output.splitlines()]  # strict JSON
        assert lines[1][names[0]] is None  # a missing number: null, not NaN


def test_the_command_line_lists_describes_and_joins(tmp_path, lakehouse, monkeypatch, feature_set):
    import pyarrow.parquet as pq

    runner = CliRunner()
    listed = runner.invoke(cli, ["features"])
    assert listed.exit_code == 0 and feature_set.features[0].name in listed.output
    wrong = runner.invoke(cli, ["describe", feature_set.features[0].name + "x"])
    assert wrong.exit_code == 1 and "did you mean" in wrong.output
    monkeypatch.setenv("RISK_LAKEHOUSE_URI", lakehouse.root)
    pq.write_table(_entities(feature_set), tmp_path / "in.parquet")
    joined = runner.invoke(
        cli, ["historical", str(tmp_path / "in.parquet"), str(tmp_path / "out.parquet")]
    )
    assert joined.exit_code == 0, joined.output
    assert "1 rows written" in joined.output
    assert pq.read_table(tmp_path / "out.parquet")["customer_known"].to_pylist() == [True]


def test_the_partition_in_force_survives_loads_days_late():
    """Two loads in a row finished days late: the partition in force at the first row is the
    one before them, and it is kept (pruning by plan alone kept only the two late ones)."""
    from featurestore.historical import usable_partitions

    d = [date(2026, 3, 1) + timedelta(days=i) for i in range(5)]
    available = {
        d[0]: _midnight(d[0]) + LAG,
        d[1]: _midnight(d[1]) + LAG,
        d[2]: _midnight(d[4]) + timedelta(hours=1),  # loaded two days late
        d[3]: _midnight(d[4]) + timedelta(hours=2),  # and the next one too
        d[4]: _midnight(d[4]) + LAG,
    }
    first = _midnight(d[3]) + timedelta(hours=12)
    assert usable_partitions(available, first, first + timedelta(days=1)) == [
        d[1],
        d[2],
        d[3],
        d[4],
    ]
    assert usable_partitions(available, first, first) == [d[1]]


def test_passthrough_columns_index_and_globs(tmp_path, lakehouse, feature_set):
    """Other columns come back as they went in (a Paris time stays in Paris, a pandas index
    stays); a glob reads the files it names, in name order; ids must be text."""
    import pyarrow.parquet as pq

    paris = pd.Timestamp("2026-03-02 13:00", tz="Europe/Paris")
    frame = pd.DataFrame(
        {
            "customer_id": ["c000000002", "c000000003"],
            "event_ts": [paris, paris],
            "seen": [paris, paris],
        },
        index=pd.Index([7, 3], name="case"),
    )
    got = historical_features(frame, lag=LAG, lakehouse=lakehouse)
    assert list(got.index) == [7, 3] and got.index.name == "case"
    assert got["seen"].dt.tz is not None and str(got["seen"].dt.tz) == "Europe/Paris"
    assert got["event_ts"].iloc[0] == paris and got["customer_known"].tolist() == [True, True]
    for i in range(3):
        pq.write_table(_entities(feature_set, n=[i]), tmp_path / f"part-{i}.parquet")
    globbed = historical_features(str(tmp_path / "part-*.parquet"), lag=LAG, lakehouse=lakehouse)
    assert globbed["n"].to_list() == [0, 1, 2]
    with pytest.raises(FeatureStoreError, match="no such Parquet file"):
        historical_features(str(tmp_path / "nothing-*.parquet"), lakehouse=lakehouse)
    numbers = pa.table({"customer_id": [1], "event_ts": _entities(feature_set)["event_ts"]})
    with pytest.raises(FeatureStoreError, match="customer_id must be text"):
        historical_features(numbers, lakehouse=lakehouse)
    (tmp_path / "taken.parquet").write_bytes(b"")
    with pytest.raises(FeatureStoreError, match="exists"):
        historical_features(
            _entities(feature_set), lakehouse=lakehouse, output=tmp_path / "taken.parquet"
        )


DEVICE_DAYS = [date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)]  # 3 March: devices only


@pytest.fixture(scope="module")
def device_snapshots(lakehouse) -> dict[tuple[date, str], dict]:
    """Device snapshots beside the customers' (on a day the customers' lack, too)."""
    device_set = load_feature_set(entity="device")
    for i, day in enumerate(DEVICE_DAYS):
        snapshot = snapshot_table(device_set, 12, day, seed=10 + i, prefix="d")
        gone = pa.array([f"d{n:09d}" for n in range(i, 12, 5)])
        snapshot = snapshot.filter(pc.invert(pc.is_in(snapshot["device_id"], gone)))
        lakehouse.replace_partitions(
            ENTITY_FEATURES["device"], snapshot, ["as_of_date"], f"as_of_date = '{day}'"
        )
    rows = lakehouse.dataset(ENTITY_FEATURES["device"]).to_table().to_pylist()
    return {(r["as_of"].date(), r["device_id"]): r for r in rows}


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(entity_rows(), st.lists(st.integers(-1, 14), min_size=60, max_size=60))
def test_other_entities_features_equal_the_oracle(
    lakehouse, snapshots, device_snapshots, feature_set, drawn, devices
):
    """``device_*`` features: joined by the rows' device_id (null: no device; some never in a
    snapshot) to the device snapshot in force at each moment, chosen among the device table's
    own partitions by the same availability rule; the customer's columns as before."""
    rows, zone = drawn
    device_set = load_feature_set(entity="device")
    device_names = [c.name for c in device_set.features[:3]]
    names = [feature_set.features[0].name]
    device_id = [None if d < 0 else f"d{d:09d}" for d in devices[: len(rows)]]
    timestamp = pa.timestamp("us", None if zone is None else str(zone))
    table = pa.table(
        {
            "customer_id": [r["customer_id"] for r in rows],
            "device_id": pa.array(device_id, pa.string()),
            "at": pa.array([r["at"] for r in rows], timestamp),
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FeatureStoreWarning)
        got = historical_features(
            table,
            [*names, *(f"device_{n}" for n in device_names)],
            timestamp_column="at",
            lag=LAG,
            lakehouse=lakehouse,
        ).to_pylist()
    kinds = {c.name: c.kind for c in feature_set.columns}
    customer = oracle(rows, snapshots, names, kinds)
    available = {
        d: max(_midnight(d) + LAG, LATE_AT if d == LATE else _midnight(d)) for d in DEVICE_DAYS
    }
    for i, (g, row) in enumerate(zip(got, rows, strict=True)):
        assert g["customer_known"] == customer[i]["customer_known"]
        assert _same(g[names[0]], customer[i][names[0]])
        at = row["at"].astimezone(UTC) if row["at"].tzinfo else row["at"].replace(tzinfo=UTC)
        usable = [d for d in DEVICE_DAYS if available[d] <= at]
        chosen = max(usable, key=lambda d: available[d]) if usable else None
        found = device_snapshots.get((chosen, device_id[i]))
        assert g["device_known"] == (found is not None), (i, row, device_id[i])
        for n in device_names:
            want = (
                math.nan
                if found is None or found[n] is None
                else float(np.float32(float(found[n])))
            )
            assert _same(g[f"device_{n}"], want), (i, n, g[f"device_{n}"], want)


def test_an_entity_feature_needs_its_key(lakehouse, feature_set):
    rows = _entities(feature_set)
    with pytest.raises(FeatureStoreError, match="no 'device_id' column"):
        historical_features(rows, ["device_txn_count_7d"], lakehouse=lakehouse)
    with pytest.raises(FeatureStoreError, match="unknown device feature"):
        historical_features(rows, ["device_no_such"], lakehouse=lakehouse)
