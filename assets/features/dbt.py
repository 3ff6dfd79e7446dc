"""The dbt project as partitioned Dagster assets: staging -> intermediate -> marts.

Partition D (or a backfill range of them) becomes dbt ``--vars {start_date, end_date}``; the
models build the snapshots with as_of = D + 1 day. dbt tests show up as asset checks.
"""

import json
import os
from collections.abc import Mapping
from datetime import date
from typing import Any

from dagster import AssetExecutionContext, RetryRequested
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from assets.ingest.raw import partition_days
from assets.names import WAREHOUSE_POOL
from assets.partitions import daily_partitions, monthly_batches
from featurestore.registry import ensure_manifest
from resources import dbt_cli
from riskcore import settings

for _key, _value in dbt_cli.dbt_env().items():
    os.environ.setdefault(_key, _value)  # the dbt project reads these (profiles, sources)

dbt_project = DbtProject(project_dir=dbt_cli.DBT_PROJECT_DIR)
ensure_manifest(dbt_project.manifest_path)  # outside `dagster dev` too


def dbt_vars(days: list[date]) -> dict[str, str]:
    """The dbt vars for a partition range: the first and last day of data to include."""
    return {"start_date": days[0].isoformat(), "end_date": days[-1].isoformat()}


def dbt_build_args(days: list[date]) -> list[str]:
    return ["build", "--vars", json.dumps(dbt_vars(days))]


class FeatureTranslator(DagsterDbtTranslator):
    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str:
        fqn = dbt_resource_props["fqn"]
        # models/<layer>/<model>: the layer is the group (staging, intermediate, marts)
        return f"dbt_{fqn[1]}" if len(fqn) > 2 else "dbt_seeds"


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    partitions_def=daily_partitions,
    backfill_policy=monthly_batches,
    dagster_dbt_translator=FeatureTranslator(),
    pool=WAREHOUSE_POOL,
)
def dbt_features(context: AssetExecutionContext, dbt: DbtCliResource):
    invocation = dbt.cli(dbt_build_args(partition_days(context)), context=context)
    stall_s = settings.load().dbt_stall_s
    with dbt_cli.StallWatch(invocation.process, stall_s) as watch:
        try:
            for event in invocation.stream():
                watch.seen()
                yield event
        except Exception as error:
            if not watch.stalled:
                raise
            context.log.error(f"dbt reported nothing for {stall_s:g} s: killed, running again")
            raise RetryRequested(max_retries=1) from error
