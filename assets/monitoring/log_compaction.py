"""Inference-log maintenance: serving commits a small Delta append every couple of seconds
(~43k files a day per replica), which readers pay for in file opens. Once a day the closed
``scored_date`` partitions are compacted into large files (the open day is left to the writer,
so compaction never conflicts with its appends), and files no version newer than the retention
needs are vacuumed."""

from datetime import UTC, datetime

from dagster import Config, OpExecutionContext, Output, op

from resources.lakehouse import Lakehouse
from riskcore import settings


class CompactionConfig(Config):
    retention_hours: int = 168  # time travel kept, and readers mid-scan protected, for a week
    target_mb: int = 128


@op(description="Compacts the inference log's closed days and vacuums unreferenced files.")
def compact_inference_log(
    context: OpExecutionContext, config: CompactionConfig, lakehouse: Lakehouse
) -> Output[dict]:
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    uri = settings.load().inference_log(lakehouse.root)
    try:
        table = DeltaTable(uri)
    except TableNotFoundError:
        context.log.info(f"no inference log at {uri} yet")
        return Output({}, metadata={"uri": uri, "skipped": "no inference log yet"})
    today = datetime.now(UTC).date()
    files_before = len(table.file_uris())
    done = table.optimize.compact(
        partition_filters=[("scored_date", "<", today.isoformat())],
        target_size=config.target_mb * 2**20,
    )
    # The retention is ours to choose (e.g. 0 in tests): not Delta's 7-day floor.
    removed = table.vacuum(
        retention_hours=config.retention_hours, dry_run=False, enforce_retention_duration=False
    )
    summary = {
        "files_before": files_before,
        "files_after": len(table.file_uris()),
        "files_compacted": done["numFilesRemoved"],
        "files_written": done["numFilesAdded"],
        "files_vacuumed": len(removed),
        "days_before": today.isoformat(),
    }
    context.log.info(f"inference log compacted: {summary}")
    return Output(summary, metadata={"uri": uri, **summary})
