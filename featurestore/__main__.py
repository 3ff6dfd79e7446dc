"""`python -m featurestore`: the SDK on the command line (click for the commands, tqdm for the
progress of a long join). Run it where `make demo` ran, or point RISK_DATA_DIR at a data folder."""

from __future__ import annotations

import json
import warnings
from datetime import timedelta

import click
import numpy as np
from tqdm import tqdm

from featurestore import FeatureStoreError, catalog, historical, online


def _show(message, category, *_) -> None:
    click.echo(f"{category.__name__}: {message}", err=True)


def _fail(error: Exception) -> None:
    raise click.ClickException(str(error)) from error


@click.group()
def cli() -> None:
    """The feature store: its features, point-in-time joins and the online store."""
    warnings.simplefilter("always", historical.FeatureStoreWarning)
    warnings.showwarning = _show  # this process is the command line: warnings as one line


@cli.command("features")
def list_features() -> None:
    """Every servable feature, the customer's and each other entity's (by its prefix): name,
    kind, window and what it measures."""
    rows = catalog.features()
    width = max(len(f.name) for f in rows)
    for entity in dict.fromkeys(f.entity for f in rows):
        mine = [f for f in rows if f.entity == entity]
        click.echo(f"{entity}: feature set {mine[0].feature_set_version} ({len(mine)} columns)")
        for f in mine:
            role = "" if f.role == "feature" else f" [{f.role}]"
            click.echo(
                f"{f.name:<{width}}  {f.kind:<11} {f.window or '-':<4} {f.description}{role}"
            )


@cli.command()
@click.argument("name")
def describe(name: str) -> None:
    """One feature in full (JSON)."""
    try:
        info = catalog.feature(name)
    except FeatureStoreError as error:
        _fail(error)
    click.echo(json.dumps(info.__dict__, indent=2, default=list))


def _row_count(path: str) -> int | None:
    """The entity rows to join, from the files' metadata (for the progress bar)."""
    try:
        return historical._dataset(path).count_rows()
    except (FeatureStoreError, OSError):
        return None


@cli.command("historical")
@click.argument("entities")
@click.argument("output")
@click.option(
    "--features", "names", help="comma-separated feature names (default: every model feature)"
)
@click.option("--timestamp-column", default="event_ts", show_default=True)
@click.option("--lag-hours", type=float, help="availability lag (default: RISK_AVAILABILITY_LAG_H)")
@click.option("--overwrite", is_flag=True, help="replace OUTPUT if it exists")
def historical_command(entities, output, names, timestamp_column, lag_hours, overwrite) -> None:
    """Point-in-time features for the entity rows in ENTITIES (Parquet file, folder or Delta
    table, with customer_id and a timestamp), written to OUTPUT (*.parquet, else a Delta table)."""
    bar = None

    def progress(rows: int) -> None:  # drawn once rows come: a refused request draws none
        nonlocal bar
        if bar is None:
            bar = tqdm(total=_row_count(entities), unit=" rows", unit_scale=True, desc="joined")
        bar.update(rows)

    try:
        with warnings.catch_warnings(record=True) as caught:  # shown after the bar, not in it
            warnings.simplefilter("always", historical.FeatureStoreWarning)
            written = historical.historical_features(
                entities,
                names.split(",") if names else None,
                timestamp_column=timestamp_column,
                lag=None if lag_hours is None else timedelta(hours=lag_hours),
                output=output,
                overwrite=overwrite,
                progress=progress,
            )
    except FeatureStoreError as error:
        _fail(error)
    finally:
        if bar is not None:
            bar.close()
    for warning in caught:
        _show(warning.message, warning.category)
    click.echo(f"{written.rows:,} rows written to {written.path} ({written.format})")


@cli.command("online")
@click.argument("customer_ids", nargs=-1, required=True)
@click.option(
    "--features", "names", help="comma-separated feature names (default: every model feature)"
)
def online_command(customer_ids, names) -> None:
    """The serving generation's values for a few customers."""
    try:
        frame = online.online_features(customer_ids, names.split(",") if names else None)
    except FeatureStoreError as error:
        _fail(error)
    for row in frame.to_dicts():  # float32 in its shortest form: 44.45, not 44.45000076293945
        row = {k: _json_number(v) if isinstance(v, float) else v for k, v in row.items()}
        click.echo(json.dumps(row, default=str, allow_nan=False))


def _json_number(value: float) -> float | None:
    """A float32 value as JSON has it: shortest form; NaN (a missing value) as null."""
    return None if value != value else float(str(np.float32(value)))


@cli.command()
def status() -> None:
    """The online store: newest and serving generation (as_of, customers, expiry), pins."""
    click.echo(json.dumps(online.store_status(), indent=2, default=str))


if __name__ == "__main__":
    cli()
