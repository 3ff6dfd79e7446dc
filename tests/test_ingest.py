"""Landing files are validated: good rows land, bad rows are quarantined with reasons, nothing
is lost or crashes, no card number is stored, and re-running a day changes nothing."""

import json
import re
from datetime import date, timedelta

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assets.ingest import validate
from assets.ingest.raw import ingest_day
from assets.ingest.sources import RawSources
from assets.ingest.synthetic import GeneratorConfig, generate_transactions
from assets.ingest.validate import validate_labels, validate_transactions
from resources.lakehouse import LABELS, QUARANTINE, TRANSACTIONS, Lakehouse
from riskcore.pan import MIN_DIGITS, find_pan

DAY = date(2026, 2, 10)
HASH = "ab" * 32
GOOD = {
    "transaction_id": "t1",
    "customer_id": "c1",
    "event_ts": "2026-02-10T10:00:00Z",
    "amount": "12.50",
    "currency": "EUR",
    "merchant_id": "m1",
    "merchant_category": "grocery",
    "channel": "pos",
    "device_id": None,
    "country": "DE",
    "installments": "1",
    "card_hash": HASH,
}
PAN = " ".join(["4111"] + ["1111"] * 3)  # a public test number, in pieces

BAD = [
    ({"transaction_id": None}, "missing transaction_id"),
    ({"amount": "-3.00"}, "amount must be > 0"),
    ({"amount": "0"}, "amount must be > 0"),
    ({"amount": "1.005"}, "amount is not a decimal with at most 2 places"),
    ({"channel": "fax"}, "unknown channel fax"),
    ({"event_ts": "yesterday"}, "unparsable event_ts"),
    ({"event_ts": "2026-02-11T00:00:00Z"}, "event_ts not on the partition day 2026-02-10"),
    ({"card_hash": PAN.replace(" ", "")}, "card_hash is not a keyed hash"),
    ({"merchant_id": f"shop {PAN}"}, "card-number-like value in a text field"),
    ({"installments": "0"}, "installments must be an integer from 1 to 60"),
    ({"country": "Germany"}, "country not ISO alpha-2"),
    ({"customer_id": "   "}, "missing customer_id"),
    ({"customer_id": "c\x001"}, "customer_id holds a control character"),
    ({"merchant_id": "m\n1"}, "merchant_id holds a control character"),
    ({"device_id": "d\x85"}, "device_id holds a control character"),
]


def _rows(*changes: dict) -> pa.Table:
    rows = [GOOD | {"transaction_id": f"t{i}"} | c for i, c in enumerate(changes)]
    return pa.Table.from_pylist(rows, schema=pa.schema([(k, pa.string()) for k in GOOD]))


@pytest.mark.parametrize(("change", "reason"), BAD)
def test_each_bad_row_is_quarantined_with_its_reason(change, reason):
    checked = validate_transactions(_rows({}, change), DAY, "drop.csv")
    assert checked.good.num_rows == 1
    assert checked.quarantined.num_rows == 1
    assert reason in checked.quarantined["reason"][0].as_py()
    assert checked.quarantined["row_number"][0].as_py() == 1


def test_timezones_are_normalised_to_utc():
    checked = validate_transactions(
        _rows({"event_ts": "2026-02-11T00:30:00+01:00"}, {"event_ts": "2026-02-10 23:00:00"}),
        DAY,
        "drop.csv",
    )
    assert checked.quarantined.num_rows == 0
    assert [t.hour for t in checked.good["event_ts"].to_pylist()] == [23, 23]


def test_duplicates_keep_the_first_good_row():
    rows = _rows({"amount": "-1"}, {}, {})
    rows = rows.set_column(0, "transaction_id", pa.array(["dup"] * 3))
    checked = validate_transactions(rows, DAY, "drop.csv")
    assert checked.good.num_rows == 1
    assert checked.good["amount"][0].as_py() == pa.scalar(12.5).cast(pa.decimal128(18, 2)).as_py()
    reasons = checked.quarantined["reason"].to_pylist()
    assert reasons == ["amount must be > 0; duplicate transaction_id", "duplicate transaction_id"]


def test_card_numbers_never_reach_storage():
    checked = validate_transactions(
        _rows({"device_id": PAN}, {"card_hash": PAN.replace(" ", "-")}), DAY, "f"
    )
    stored = json.dumps(checked.quarantined.to_pylist(), default=str)
    assert "1111" not in stored
    assert checked.quarantined.num_rows == 2


@settings(max_examples=3000)  # enough to reach the longest fractions with an offset
@given(st.from_regex(validate._TIMESTAMP, fullmatch=True))
def test_a_value_that_is_a_timestamp_in_full_holds_no_card_number(text):
    """The scan skips such values (every synthetic and typed event_ts passes the gate): no run
    of digit groups joined by space, dot or dash in them is as long as a card number."""
    runs = [re.sub(r"\D", "", run) for run in re.findall(r"\d+(?:[ .\-]\d+)*", text)]
    assert max(map(len, runs)) < MIN_DIGITS
    assert not find_pan(text)


def test_a_card_number_in_a_typed_column_that_is_not_a_timestamp_is_still_found():
    """A typed column is scanned as its text: a duration of a card number's microseconds is
    digits."""
    rows = _rows({}).set_column(
        0, "transaction_id", pa.array([int(PAN.replace(" ", ""))], pa.duration("us"))
    )
    checked = validate_transactions(rows, DAY, "typed.parquet")
    assert checked.good.num_rows == 0
    assert "card-number-like" in checked.quarantined["reason"][0].as_py()
    assert "1111" not in checked.quarantined["row_json"][0].as_py()


def test_labels_are_checked_too():
    rows = pa.table(
        {
            "transaction_id": ["t1", "t2", None],
            "label": ["fraud", "refund", "default"],
            "label_ts": ["2026-02-10T01:00:00Z"] * 3,
        }
    )
    checked = validate_labels(rows, DAY, "labels.csv")
    assert checked.good["transaction_id"].to_pylist() == ["t1"]
    assert [r.split(";")[0] for r in checked.quarantined["reason"].to_pylist()] == [
        "unknown label refund",
        "missing transaction_id",
    ]


@pytest.fixture
def lake(tmp_path):
    return Lakehouse(root_uri=str(tmp_path / "lake")), tmp_path / "landing"


def _read(lakehouse: Lakehouse, table: str) -> pa.Table:
    return (
        lakehouse.dataset(table)
        .to_table()
        .sort_by(
            [(c, "ascending") for c in ("source", "row_number")]
            if table == QUARANTINE
            else "transaction_id"
        )
    )


def test_a_day_of_synthetic_data_and_landing_files_is_ingested_idempotently(lake):
    lakehouse, landing = lake
    folder = landing / "transactions" / DAY.isoformat()
    folder.mkdir(parents=True)
    pacsv.write_csv(_rows({}, *(c for c, _ in BAD)), folder / "partner.csv")
    pq.write_table(_rows({"transaction_id": "p1"}, {"transaction_id": "p1"}), folder / "b.parquet")
    (folder / "broken.parquet").write_bytes(b"not parquet at all")
    sources = RawSources(customers=500, seed=3, landing_dir=str(landing))
    synthetic = generate_transactions(GeneratorConfig(seed=3, customers=500), DAY).num_rows

    report = ingest_day("transactions", DAY, sources, lakehouse)
    assert report.rows == synthetic + 1 + 1  # the csv's good row, the parquet's first p1
    assert report.quarantined == len(BAD) + 1 + 1  # + the duplicate p1, + the broken file
    assert "unreadable file broken.parquet" in " ".join(report.reasons)
    first = (_read(lakehouse, TRANSACTIONS), _read(lakehouse, QUARANTINE))

    again = ingest_day("transactions", DAY, sources, lakehouse)
    assert (again.rows, again.quarantined) == (report.rows, report.quarantined)
    assert first == (_read(lakehouse, TRANSACTIONS), _read(lakehouse, QUARANTINE))
    assert (landing / "transactions" / DAY.isoformat() / "broken.parquet").exists()

    # A file re-sent on a later day repeats stored ids: quarantined, not double counted.
    later = landing / "transactions" / "2026-02-11"
    later.mkdir(parents=True)
    pacsv.write_csv(_rows({"event_ts": "2026-02-11T09:00:00Z"}), later / "resent.csv")
    resent = ingest_day(
        "transactions",
        date(2026, 2, 11),
        RawSources(synthetic=False, landing_dir=str(landing)),
        lakehouse,
    )
    assert (resent.rows, resent.quarantined) == (0, 1)
    assert "already in another partition" in next(iter(resent.reasons))


def test_the_duplicate_check_reads_a_bounded_window_of_days_on_either_side(lake, monkeypatch):
    """Within RISK_DUPLICATE_WINDOW_DAYS of a stored day (later or, for a backfill, earlier)
    a repeated id is quarantined; beyond it, it is stored again: the documented price of a
    check whose cost does not grow with the history."""
    lakehouse, landing = lake
    monkeypatch.setenv("RISK_DUPLICATE_WINDOW_DAYS", "5")

    def resend(day: date) -> tuple[int, int]:
        folder = landing / "transactions" / day.isoformat()
        folder.mkdir(parents=True)
        event = {"transaction_id": "p1", "event_ts": f"{day.isoformat()}T09:00:00Z"}
        pacsv.write_csv(_rows(event), folder / "resent.csv")
        sources = RawSources(synthetic=False, landing_dir=str(landing))
        report = ingest_day("transactions", day, sources, lakehouse)
        return report.rows, report.quarantined

    assert resend(DAY) == (1, 0)
    assert resend(DAY + timedelta(days=5)) == (0, 1)  # at the window's edge
    assert resend(DAY - timedelta(days=5)) == (0, 1)  # a backfill of an earlier day
    assert resend(DAY + timedelta(days=6)) == (1, 0)  # past it: stored again


def test_labels_day_is_ingested(lake):
    lakehouse, _ = lake
    report = ingest_day("labels", date(2026, 4, 20), RawSources(customers=3_000, seed=3), lakehouse)
    assert report.rows > 0 and report.quarantined == 0
    assert lakehouse.dataset(LABELS).count_rows() == report.rows


def test_the_demo_partner_file_lands_two_rows_and_quarantines_three(lake, monkeypatch):
    from demo.run import drop_partner_file

    lakehouse, landing = lake
    monkeypatch.setenv("RISK_LANDING_DIR", str(landing))
    drop_partner_file(DAY)
    sources = RawSources(synthetic=False, landing_dir=str(landing))
    report = ingest_day("transactions", DAY, sources, lakehouse)
    assert (report.rows, report.quarantined) == (2, 3)
    assert "4111" not in json.dumps(_read(lakehouse, QUARANTINE).to_pylist(), default=str)


def test_card_numbers_in_any_field_of_a_landing_file_are_quarantined_masked(lake):
    from demo.pan_scan import SEEDED
    from riskcore.pan import find_pan

    lakehouse, landing = lake
    folder = landing / "transactions" / DAY.isoformat()
    folder.mkdir(parents=True)
    fields = ["transaction_id", "customer_id", "merchant_id", "merchant_category", "device_id"]
    seeded = [{f: p} for f in fields for p in SEEDED]
    seeded += [{"channel": SEEDED[0]}, {"card_hash": SEEDED[2]}]  # a reason quotes the channel
    partner = {"merchant_id": "1" * 20, "device_id": "ab" * 32}  # a 20-digit id is no card
    pacsv.write_csv(_rows(partner, *seeded), folder / "partner.csv")
    sources = RawSources(synthetic=False, landing_dir=str(landing))

    report = ingest_day("transactions", DAY, sources, lakehouse)
    assert (report.rows, report.quarantined) == (1, len(seeded))
    stored = _read(lakehouse, QUARANTINE).to_pylist()
    assert all("card-number-like value" in r["reason"] for r in stored)
    texts = [v for r in stored for v in r.values() if isinstance(v, str)]
    texts += [v for r in stored for v in json.loads(r["row_json"]).values() if v]
    assert not any(find_pan(t) for t in texts)
    assert _read(lakehouse, TRANSACTIONS)["merchant_id"].to_pylist() == ["1" * 20]


def test_landing_csvs_are_read_as_written_and_a_bad_row_is_quarantined_alone(lake):
    lakehouse, landing = lake
    folder = landing / "transactions" / DAY.isoformat()
    folder.mkdir(parents=True)
    header = ",".join(GOOD)

    def line(tid: str, **change) -> str:
        row = GOOD | {"transaction_id": tid, "device_id": ""} | change
        return ",".join(v for v in row.values())

    body = [
        line("na", country="NA"),  # Namibia
        line("null", merchant_id="NULL"),
        line("n/a", merchant_category="N/A"),
        line("nan", device_id="nan"),
        "ragged,row",
        line("ragged-pan", merchant_id="x") + "," + PAN,
        line("empty"),
    ]
    raw = (header + "\n" + "\n".join(body) + "\n").encode()
    raw += line("latin1", merchant_id="caf\xe9").encode("latin-1") + b"\n"
    (folder / "partner.csv").write_bytes(raw)
    sources = RawSources(synthetic=False, landing_dir=str(landing))

    report = ingest_day("transactions", DAY, sources, lakehouse)
    good = {r["transaction_id"]: r for r in _read(lakehouse, TRANSACTIONS).to_pylist()}
    assert set(good) == {"na", "null", "n/a", "nan", "empty"}
    assert good["na"]["country"] == "NA" and good["null"]["merchant_id"] == "NULL"
    assert good["n/a"]["merchant_category"] == "N/A" and good["nan"]["device_id"] == "nan"
    assert good["empty"]["device_id"] is None  # an empty field is null
    stored = _read(lakehouse, QUARANTINE).to_pylist()
    assert report.quarantined == len(stored) == 3
    reasons = sorted(r["reason"] for r in stored)
    assert [r.split(":")[0] for r in reasons][:2] == ["ragged row", "ragged row"]
    assert reasons[2] == "undecodable bytes (not UTF-8)"
    assert "4111" not in json.dumps(stored, default=str)


def test_a_ragged_row_of_bytes_that_are_not_utf8_is_quarantined_alone(lake):
    """Read as UTF-8, such a row failed the whole file (found by `make chaos`)."""
    lakehouse, landing = lake
    folder = landing / "transactions" / DAY.isoformat()
    folder.mkdir(parents=True)
    good = ",".join(v or "" for v in (GOOD | {"transaction_id": "kept"}).values())
    raw = (",".join(GOOD) + "\n" + good + "\n").encode() + b"ragged,\xff\xfe\n"
    (folder / "partner.csv").write_bytes(raw)
    report = ingest_day(
        "transactions", DAY, RawSources(synthetic=False, landing_dir=str(landing)), lakehouse
    )
    assert (report.rows, report.quarantined) == (1, 1)
    assert _read(lakehouse, TRANSACTIONS)["transaction_id"].to_pylist() == ["kept"]
    assert _read(lakehouse, QUARANTINE)["reason"][0].as_py().startswith("ragged row")


def test_a_file_of_unreadable_rows_beside_stored_days_stops_nothing(lake):
    """Every row of a file rejected (not UTF-8) leaves it no id to look up among the stored
    days; the day's other file and the stored window are checked as usual."""
    lakehouse, landing = lake
    stored = landing / "transactions" / DAY.isoformat()
    stored.mkdir(parents=True)
    pacsv.write_csv(_rows({}, {}), stored / "day.csv")  # t0 and t1, a day within the window
    sources = RawSources(synthetic=False, landing_dir=str(landing))
    assert ingest_day("transactions", DAY, sources, lakehouse).rows == 2
    later = DAY + timedelta(days=1)
    folder = landing / "transactions" / later.isoformat()
    folder.mkdir(parents=True)
    (folder / "a.csv").write_bytes((",".join(GOOD) + "\n").encode() + b"\xff,\xfe\n")
    at = f"{later.isoformat()}T10:00:00Z"
    pacsv.write_csv(
        _rows({"event_ts": at}, {"transaction_id": "t9", "event_ts": at}), folder / "b.csv"
    )
    report = ingest_day("transactions", later, sources, lakehouse)
    assert (report.rows, report.quarantined) == (1, 2)  # t9; t0 stored on DAY; a.csv's row
    assert "already in another partition" in " ".join(report.reasons)


IDS = ["c-42", "   ", "c\x00", "c\n", "c\x85", "c\u2028", "c\xa0", "c\u200d", "  c "]


@pytest.mark.parametrize("value", IDS)
def test_an_id_is_judged_alike_by_ingest_and_the_service(value):
    """riskcore/ids.py is the one rule: what ingest quarantines, the service refuses."""
    from serving.schemas import EXAMPLE, ScoreRequest

    checked = validate_transactions(_rows({"customer_id": value}), DAY, "drop.csv")
    try:
        ScoreRequest.model_validate(EXAMPLE | {"customer_id": value})
        refused = False
    except ValueError:
        refused = True
    assert refused == (checked.quarantined.num_rows == 1)
