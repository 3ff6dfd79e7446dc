"""The online store, for operators: `make online-status`, and `make online-rollback
REASON=...` when a bad snapshot got through (the previous generation serves again; the bad
as_of is pinned, so neither the refill sensor nor a re-run loads it; a newer snapshot does)."""

import logging

import click

from featurestore.registry import load_feature_set
from resources.online_store import from_environment

log = logging.getLogger("risk.online_store")


@click.group()
def cli() -> None:
    """The online store, for operators (`make online-rollback`, `make online-status`)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")


@cli.command()
def status() -> None:
    """The serving generation, the one it replaced, and any pinned as_of."""
    store = from_environment().store(load_feature_set().version)
    click.echo(f"newest:   {store.current_generation(fresh=True)}")
    click.echo(f"serving:  {store.serving_generation(fresh=True)}")
    click.echo(f"pinned:   {store.pinned()}")


@cli.command()
@click.option("--reason", required=True, help="why the serving snapshot is rolled back")
def rollback(reason: str) -> None:
    """Serve the previous generation again; the bad snapshot's as_of is not loaded again."""
    store = from_environment().store(load_feature_set().version)
    restored, bad = store.roll_back(reason)
    log.warning(
        "online store rolled back by an operator: generation %s (as_of %s) -> %s (as_of %s): %s",
        bad.id,
        f"{bad.as_of:%Y-%m-%d}",
        restored.id,
        f"{restored.as_of:%Y-%m-%d}",
        reason,
    )


if __name__ == "__main__":
    cli()
