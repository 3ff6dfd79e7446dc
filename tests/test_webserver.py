"""The Dagster UI's backend serves the asset graph: start the webserver, ask GraphQL."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from resources.local_redis import free_port
from riskcore.settings import PROJECT_ROOT
from tests.test_definitions import EXPECTED_ASSETS

pytestmark = pytest.mark.integration

QUERY = "{ assetNodes { assetKey { path } groupName isPartitioned } }"


@pytest.fixture
def webserver():
    port = free_port()
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster-webserver"),
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=PROJECT_ROOT,
        env=os.environ.copy(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    yield f"http://127.0.0.1:{port}/graphql", proc
    os.killpg(proc.pid, signal.SIGKILL)  # a background dagster ignores SIGTERM; see STACK.md
    proc.wait(timeout=30)


def test_asset_graph_is_served_over_graphql(webserver):
    url, proc = webserver
    deadline = time.monotonic() + 120
    nodes = None
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            reply = httpx.post(url, json={"query": QUERY}, timeout=10).json()
            nodes = reply.get("data", {}).get("assetNodes")
            if nodes:
                break
        except httpx.HTTPError:
            pass
        time.sleep(1)
    died = proc.poll() is not None
    assert nodes, f"no asset graph: {proc.stderr.read().decode() if died else 'timed out'}"
    keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
    assert keys == EXPECTED_ASSETS
    daily = [n for n in nodes if n["groupName"] not in ("training", "rollout")]
    assert daily and all(n["isPartitioned"] for n in daily)
    groups = {n["groupName"] for n in nodes}
    assert {
        "ingest",
        "dbt_staging",
        "dbt_intermediate",
        "dbt_marts",
        "lakehouse",
        "online_store",
        "training",
    } <= groups
