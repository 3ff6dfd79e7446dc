"""The watch on a dbt build (resources/dbt_cli.py): a process that goes quiet past the limit
is killed and said to have stalled; one that keeps reporting runs to its end."""

import subprocess
import time

from resources.dbt_cli import StallWatch


def test_a_quiet_process_is_killed_as_stalled():
    process = subprocess.Popen(["sleep", "60"])
    began = time.monotonic()
    with StallWatch(process, stall_s=0.5, poll_s=0.05) as watch:
        process.wait(timeout=10)
    assert watch.stalled and process.returncode != 0
    assert time.monotonic() - began < 5


def test_a_process_that_keeps_reporting_runs_to_its_end():
    process = subprocess.Popen(["sleep", "1.5"])
    with StallWatch(process, stall_s=0.5, poll_s=0.05) as watch:
        while process.poll() is None:
            watch.seen()
            time.sleep(0.1)
    assert not watch.stalled and process.returncode == 0
