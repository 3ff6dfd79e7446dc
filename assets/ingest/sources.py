"""Where raw rows come from: the embedded generator and landing files dropped in a folder."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from dagster import ConfigurableResource

from assets.ingest.contract import LABELS_SCHEMA, TRANSACTIONS_SCHEMA
from assets.ingest.synthetic import GeneratorConfig, generate_labels, generate_transactions
from riskcore import settings

_SCHEMAS = {"transactions": TRANSACTIONS_SCHEMA, "labels": LABELS_SCHEMA}


class UnreadableFile(Exception):
    """A landing file that cannot be parsed at all; it is quarantined whole, never deleted."""


def _read_landing_file(path: Path, table: str) -> pa.Table:
    try:
        if path.suffix == ".parquet":
            return pq.read_table(path)
        names = _SCHEMAS[table].names
        return pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=True
            ),
        )
    except (pa.ArrowException, OSError) as exc:
        raise UnreadableFile(f"unreadable file {path.name}: {exc}") from exc


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
        drift = date.fromisoformat(self.drift_from) if self.drift_from else None
        start = date.fromisoformat(self.start_date) if self.start_date else None
        return GeneratorConfig(
            seed=self.seed,
            customers=self.customers,
            start=start or settings.load().first_day(),
            drift_from=drift,
        )

    def landing_files(self, table: str, day: date) -> list[Path]:
        folder = Path(self.landing_dir or settings.load().landing_dir) / table / day.isoformat()
        return sorted(p for p in folder.glob("*") if p.suffix in {".parquet", ".csv"})

    def batches(self, table: str, day: date) -> Iterator[tuple[str, pa.Table | UnreadableFile]]:
        """(source name, rows) for every source of ``table`` on ``day``."""
        if self.synthetic:
            make = generate_transactions if table == "transactions" else generate_labels
            yield "synthetic", make(self.generator_config(), day)
        for path in self.landing_files(table, day):
            try:
                yield path.name, _read_landing_file(path, table)
            except UnreadableFile as exc:
                yield path.name, exc
