"""The service comes back online by itself after the embedded Redis crashes or hangs.

The service is given the embedded server's URL once, as ``make serve`` does (REDIS_URL fixed at
start-up). Under a light load of scores, Redis is killed -9 and started again through the
project's own path (``resources.local_redis.ensure_running``, which reuses the port kept in the
data folder), or stopped with SIGSTOP and resumed with SIGCONT. What is measured: from the moment
Redis answers again to the first score answered ``online``."""

import contextlib
import json
import os
import signal
import threading
import time

import pytest
import redis
from fastapi.testclient import TestClient
from redis.backoff import NoBackoff
from redis.retry import Retry

from resources import local_redis
from serving.app import create_app
from serving.config import ServingConfig
from tests.serving_env import API_KEY, load_served_snapshot

pytestmark = [pytest.mark.integration, pytest.mark.slow]
AUTH = {"X-API-Key": API_KEY}
RECOVERY_BUDGET_S = 2.0


class Load:
    """Scores one known customer's purchase in a loop (~50 a second) on a thread, and records
    when each answer came and its feature source."""

    def __init__(self, client: TestClient, txn: dict):
        self.client, self.txn = client, txn
        self.answers: list[tuple[float, int, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="score-load")

    def _run(self) -> None:
        while not self._stop.is_set():
            response = self.client.post("/score", json=self.txn, headers=AUTH)
            source = response.json().get("feature_source") if response.status_code == 200 else None
            self.answers.append((time.monotonic(), response.status_code, source))
            time.sleep(0.02)

    def __enter__(self) -> "Load":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def first_online_after(self, since: float, timeout_s: float) -> float | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for at, _, source in list(self.answers):
                if at > since and source == "online":
                    return at
            time.sleep(0.01)
        return None


def _answers_again(url: str, since: float, timeout_s: float = 30) -> float:
    """The first moment after ``since`` that Redis answers a PING (not LOADING), polled every
    5 ms with a client that never retries by itself."""
    probe = redis.Redis.from_url(
        url, socket_timeout=0.05, socket_connect_timeout=0.05, retry=Retry(NoBackoff(), 0)
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if probe.ping() and time.monotonic() > since:
                return time.monotonic()
        except redis.RedisError:  # refused, timed out, still loading
            pass
        time.sleep(0.005)
    raise TimeoutError(f"Redis at {url} did not answer in {timeout_s} s")


@pytest.fixture
def embedded(tmp_path, env):
    """The embedded server of a data folder, holding the served snapshot (saved to disk)."""
    folder = tmp_path / "online_store"
    url = local_redis.ensure_running(folder)
    try:
        client = redis.Redis.from_url(url)
        load_served_snapshot(client, env.feature_set)
        client.save()
        yield folder, url
    finally:
        pid = json.loads((folder / "server.json").read_text()).get("pid")
        with contextlib.suppress(ProcessLookupError, TypeError):
            os.kill(pid, signal.SIGCONT)  # never leave a stopped server behind
        local_redis.stop(folder)


@pytest.fixture
def service(env, embedded):
    """The service started with the embedded server's URL and the production breaker (3
    failures open it for 1 s); the 50 ms Redis timeout of the other serving tests. The queue's
    overload budgets are wide: the recovery is under test, and a busy machine's pause of a few
    ms must not turn an answer into ``fallback_overload`` or a 503 (CI saw it once)."""
    _, url = embedded
    config = env.config(
        redis_url=url,
        inference_log_uri="",
        breaker_cooldown_s=ServingConfig.breaker_cooldown_s,
        queue_budget_ms=1_000.0,
        shed_after_ms=5_000.0,
    )
    with TestClient(create_app(config)) as client:
        yield client


def _known_transaction(env) -> dict:
    known = next(r for r in env.served_rows().to_pylist() if r["customer_known"])
    return env.transaction(known["transaction_id"])


def _pid(folder) -> int:
    return json.loads((folder / "server.json").read_text())["pid"]


def _recovery(load: Load, url: str, outage_began: float, back: float, kind: str) -> float:
    up = _answers_again(url, back)
    online = load.first_online_after(up, timeout_s=10)
    assert online is not None, f"{kind}: not online 10 s after Redis answered again"
    during = [s for at, _, s in load.answers if outage_began + 0.3 < at < back]
    assert during and set(during) == {"fallback_store_unavailable"}, (kind, set(during))
    assert {status for _, status, _ in load.answers} == {200}
    took = online - up
    print(f"\n{kind}: online {took * 1000:.0f} ms after Redis answered again")
    return took


def test_back_online_within_2_s_after_kill_9_and_a_restart_on_the_same_port(
    env, embedded, service, record_property
):
    folder, url = embedded
    with Load(service, _known_transaction(env)) as load:
        assert load.first_online_after(0, timeout_s=10) is not None
        began = time.monotonic()
        os.kill(_pid(folder), signal.SIGKILL)
        time.sleep(1.5)  # answers fall back meanwhile
        restarted = time.monotonic()
        assert local_redis.ensure_running(folder) == url  # same port: the service finds it
        took = _recovery(load, url, began, restarted, "kill -9, ensure_running")
    record_property("recovery_after_kill_s", round(took, 3))
    assert took <= RECOVERY_BUDGET_S


def test_back_online_within_2_s_after_sigstop_and_sigcont(env, embedded, service, record_property):
    folder, url = embedded
    pid = _pid(folder)
    with Load(service, _known_transaction(env)) as load:
        assert load.first_online_after(0, timeout_s=10) is not None
        began = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(1.5)
        finally:
            resumed = time.monotonic()
            os.kill(pid, signal.SIGCONT)
        took = _recovery(load, url, began, resumed, "SIGSTOP, SIGCONT")
    record_property("recovery_after_sigcont_s", round(took, 3))
    assert took <= RECOVERY_BUDGET_S
