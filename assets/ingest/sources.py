"""Where raw rows come from: the embedded generator and landing files dropped in a folder."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from dagster import ConfigurableResource

from assets.ingest.contract import LABELS_SCHEMA, TRANSACTIONS_SCHEMA
from assets.ingest.synthetic import GeneratorConfig, generate_labels, generate_transactions
from riskcore import settings
from riskcore.pan import mask_pans

_SCHEMAS = {"transactions": TRANSACTIONS_SCHEMA, "labels": LABELS_SCHEMA}


class UnreadableFile(Exception):
    """A landing file that cannot be parsed at all; it is quarantined whole, never deleted."""


@dataclass(frozen=True)
class RejectedRows:
    """Rows of a landing file that could not be read (a ragged row, bytes that are not UTF-8):
    each is quarantined alone, the file's other rows are read. ``rows``: (reason, what is kept
    of the row, card numbers masked)."""

    rows: list[tuple[str, dict]]


def _read_landing_file(path: Path, table: str) -> tuple[pa.Table, RejectedRows]:
    """A landing file's rows as written: in a CSV only an empty field is null (no ``NA``,
    ``NULL``, ``N/A``, ``nan`` tokens: ``NA`` is Namibia), every value text."""
    try:
        if path.suffix == ".parquet":
            return pq.read_table(path), RejectedRows([])
        names = _SCHEMAS[table].names
        rejected: list[tuple[str, dict]] = []

        def ragged(row: pacsv.InvalidRow) -> str:
            fields, expected = row.actual_columns, row.expected_columns
            reason = f"ragged row: {fields} fields, the header has {expected}"
            rejected.append((reason, {"line": row.number, "text": mask_pans(row.text)}))
            return "skip"

        # Read as Latin-1 (every byte is a character), so that a row with bytes that are not
        # UTF-8 reaches the ragged-row handler or the decoding below and is rejected alone;
        # read as UTF-8, one such byte fails the whole file.
        rows = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(use_threads=False, encoding="latin-1"),
            parse_options=pacsv.ParseOptions(invalid_row_handler=ragged),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
    except (pa.ArrowException, OSError) as exc:
        raise UnreadableFile(f"unreadable file {path.name}: {exc}") from exc
    return _decoded(rows, rejected)


def _decoded(rows: pa.Table, rejected: list[tuple[str, dict]]) -> tuple[pa.Table, RejectedRows]:
    """Every column as the UTF-8 text its bytes were (a CSV is read as Latin-1, one character a
    byte); a row with bytes that are not UTF-8 is rejected alone."""
    bad: set[int] = set()
    columns = {}
    for name, column in zip(rows.column_names, rows.columns, strict=True):
        if not pa.types.is_string(column.type) or pc.all(pc.string_is_ascii(column)).as_py():
            columns[name] = column
            continue
        texts = []
        for i, value in enumerate(column.to_pylist()):
            try:
                texts.append(value if value is None else value.encode("latin-1").decode("utf-8"))
            except UnicodeDecodeError:  # kept as read (Latin-1) for the quarantine
                bad.add(i)
                texts.append(value)
        columns[name] = pa.array(texts, pa.string())
    rows = pa.table(columns)
    for i in sorted(bad):
        text = {name: mask_pans(v) for name, v in rows.slice(i, 1).to_pylist()[0].items()}
        rejected.append(("undecodable bytes (not UTF-8)", {"record": i, "row": text}))
    if bad:
        rows = rows.filter(pa.array([i not in bad for i in range(rows.num_rows)]))
    return rows, RejectedRows(rejected)


class RawSources(ConfigurableResource):
    """The embedded synthetic generator and/or landing files under ``landing/<table>/<day>/``."""

    synthetic: bool = True
    seed: int = 7
    customers: int = 20_000
    landing_dir: str = ""
    drift_from: str = ""  # ISO day from which the generator injects drift (RISK_DRIFT_FROM)
    start_date: str = ""  # ISO first day of data, the generator's day 0 (the calendar's)

    @classmethod
    def from_settings(cls, drift_from: date | None = None) -> RawSources:
        """The sources the environment configures (RISK_SYNTHETIC, RISK_SEED, RISK_CUSTOMERS,
        RISK_START_DATE, RISK_DRIFT_FROM unless ``drift_from`` is given, RISK_LANDING_DIR)."""
        env = settings.load()
        drift = drift_from or env.drift_from
        return cls(
            synthetic=env.synthetic,
            seed=env.seed,
            customers=env.customers,
            drift_from=drift.isoformat() if drift else "",
            start_date=env.first_day().isoformat(),
            landing_dir=str(env.landing_dir),
        )

    def generator_config(self) -> GeneratorConfig:
        """The generator's world; its label delays are the environment's
        (RISK_CHARGEBACK_DELAY_DAYS, RISK_DEFAULT_DELAY_DAYS)."""
        env = settings.load()
        drift = date.fromisoformat(self.drift_from) if self.drift_from else None
        start = date.fromisoformat(self.start_date) if self.start_date else None
        return GeneratorConfig(
            seed=self.seed,
            customers=self.customers,
            start=start or env.first_day(),
            drift_from=drift,
            chargeback_delay_days=env.chargeback_delay_days,
            default_delay_days=env.default_delay_days,
        )

    def landing_files(self, table: str, day: date) -> list[Path]:
        folder = Path(self.landing_dir or settings.load().landing_dir) / table / day.isoformat()
        return sorted(p for p in folder.glob("*") if p.suffix in {".parquet", ".csv"})

    def batches(
        self, table: str, day: date
    ) -> Iterator[tuple[str, pa.Table | UnreadableFile | RejectedRows]]:
        """(source name, rows) for every source of ``table`` on ``day``; a landing file's rows
        that could not be read follow its rows."""
        if self.synthetic:
            make = generate_transactions if table == "transactions" else generate_labels
            yield "synthetic", make(self.generator_config(), day)
        for path in self.landing_files(table, day):
            try:
                rows, rejected = _read_landing_file(path, table)
            except UnreadableFile as exc:
                yield path.name, exc
                continue
            yield path.name, rows
            if rejected.rows:
                yield path.name, rejected
