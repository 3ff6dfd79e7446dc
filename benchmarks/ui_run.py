"""`make bench-ui-run`: one day's partition of `daily_features` launched as the UI launches it
(through `dagster dev`'s GraphQL API, queued, dequeued by the daemon, run by the run launcher in
its own process) against the same assets materialized in one process, on the data `make demo`
built. Prints the wall times and their ratio (goal: the UI's run at most 1.5x).

The newest built day is run again (a re-run gives the same result), so the data is unchanged.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from assets.partitions import built_days
from resources.lakehouse import Lakehouse
from riskcore import settings

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def in_process(day: str) -> float:
    """The job's assets for one partition in this process (the project already loaded)."""
    from definitions import defs

    began = time.perf_counter()
    result = defs.resolve_job_def("daily_features").execute_in_process(partition_key=day)
    assert result.success
    return time.perf_counter() - began


def start_dagster(port: int) -> subprocess.Popen:
    # SIGINT/SIGTERM reset to default: dagster dev started from a script must stop when told.
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster"),
            "dev",
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=ROOT,
        env=os.environ | {"RISK_AUTOMATIONS": "0"},  # only our run, no schedule or sensor
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: (
            signal.signal(signal.SIGINT, signal.SIG_DFL),
            signal.signal(signal.SIGTERM, signal.SIG_DFL),
        ),
        start_new_session=True,
    )
    deadline = time.time() + 240
    while time.time() < deadline:  # up once the webserver answers
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                pass
            from dagster_graphql import DagsterGraphQLClient

            DagsterGraphQLClient(
                "127.0.0.1", port_number=port
            )._get_repo_locations_and_names_with_pipeline("daily_features")
            return proc
        except Exception:
            time.sleep(2)
    raise SystemExit("dagster dev did not start within 240 s")


def from_the_ui(port: int, day: str) -> float:
    """Submit the run as the UI's Materialize button does and wait for it to end."""
    from dagster import DagsterRunStatus
    from dagster_graphql import DagsterGraphQLClient

    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    for _ in range(120):  # the code location may still be loading: the UI would wait too
        try:
            began = time.perf_counter()
            run_id = client.submit_job_execution("daily_features", tags={"dagster/partition": day})
            break
        except Exception:
            time.sleep(2)
    else:
        raise SystemExit("the code location never accepted the run")
    while (status := client.get_run_status(run_id)) not in (
        DagsterRunStatus.SUCCESS,
        DagsterRunStatus.FAILURE,
        DagsterRunStatus.CANCELED,
    ):
        time.sleep(0.5)
    assert status == DagsterRunStatus.SUCCESS, f"run {run_id}: {status}"
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    days = sorted(built_days(Lakehouse()))
    if not days:
        raise SystemExit("no built day: run `make demo` first")
    day = days[-1].isoformat()
    print(f"partition {day}, {settings.load().customers:,} customers, {args.repeats} runs each")
    local = [in_process(day) for _ in range(args.repeats)]
    port = _free_port()
    proc = start_dagster(port)
    try:
        ui = [from_the_ui(port, day) for _ in range(args.repeats)]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    for name, values in (("in one process", local), ("launched as the UI does", ui)):
        print(
            f"{name:<26} median {statistics.median(values):6.1f} s  "
            f"[{min(values):.1f} - {max(values):.1f}]"
        )
    ratio = statistics.median(ui) / statistics.median(local)
    print(f"UI run / in-process: {ratio:.2f}x (goal <= 1.5x)")


if __name__ == "__main__":
    main()
