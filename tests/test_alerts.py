"""Operators hear about trouble: a failed run, a failed check (stale data) and a rollback each
reach a webhook, here a real HTTP receiver on loopback."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from dagster import (
    AssetCheckResult,
    DagsterEventType,
    DagsterInstance,
    MaterializeResult,
    asset,
    asset_check,
    build_run_status_sensor_context,
    materialize,
)

from assets.names import CANARY_CHECK, PERFORMANCE
from resources.alerts import AlertWebhook
from sensors.alerts import alert_on_run_failure, alert_on_trouble


@pytest.fixture
def receiver():
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


@asset(key=PERFORMANCE)
def rolled_back():
    return MaterializeResult(metadata={"rollback/fraud": "rolled back v3 -> v2: realized AUC"})


@asset(key=CANARY_CHECK)
def canary_halted():
    return MaterializeResult(
        metadata={
            "canary/fraud": "halted risk_fraud/4: score PSI 7.7 against the champion's",
            "canary/default": "risk_default/3 on 5% since ...: continue: within every limit",
        }
    )


@asset_check(asset=rolled_back, name="fresh")
def stale():
    return AssetCheckResult(passed=False, description="newest snapshot as_of is 50.0 h old")


@asset
def broken():
    raise RuntimeError("disk full")


def _context(instance, result, status_event):
    run = instance.get_run_by_id(result.run_id)
    event = next(r.dagster_event for r in instance.all_logs(result.run_id, of_type=status_event))
    return run, event


def test_a_stale_check_a_rollback_and_a_halted_canary_reach_the_webhook(receiver):
    url, received = receiver
    with DagsterInstance.ephemeral() as instance:
        result = materialize([rolled_back, stale, canary_halted], instance=instance)
        run, event = _context(instance, result, DagsterEventType.RUN_SUCCESS)
        alert_on_trouble(
            build_run_status_sensor_context(
                sensor_name="alert_on_trouble",
                dagster_event=event,
                dagster_instance=instance,
                dagster_run=run,
                resources={"alerts": AlertWebhook(url=url)},
            )
        )
    kinds = {a["kind"]: a for a in received}
    assert set(kinds) == {"stale", "rollback", "canary_halted"}
    assert "risk_fraud: halted risk_fraud/4" in kinds["canary_halted"]["text"]
    assert "50.0 h old" in kinds["stale"]["text"] and kinds["stale"]["run_id"] == result.run_id
    assert "rolled back v3 -> v2" in kinds["rollback"]["text"]


def test_a_failed_run_reaches_the_webhook(receiver):
    url, received = receiver
    with DagsterInstance.ephemeral() as instance:
        result = materialize([broken], instance=instance, raise_on_error=False)
        run, event = _context(instance, result, DagsterEventType.RUN_FAILURE)
        alert_on_run_failure(
            build_run_status_sensor_context(
                sensor_name="alert_on_run_failure",
                dagster_event=event,
                dagster_instance=instance,
                dagster_run=run,
                resources={"alerts": AlertWebhook(url=url)},
            ).for_run_failure()
        )
    assert [a["kind"] for a in received] == ["run_failure"]
    assert received[0]["job"] == run.job_name and received[0]["run_id"] == result.run_id


def test_an_unreachable_webhook_never_raises():
    assert AlertWebhook(url="http://127.0.0.1:9/nothing", timeout_s=0.5).send("x", "y") is False
