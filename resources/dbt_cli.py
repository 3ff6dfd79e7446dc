"""How the pipeline calls dbt: the project folder, the environment dbt's profiles read, the
dbt executable of this interpreter's environment, and a watch for a build gone quiet."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from riskcore import settings

DBT_PROJECT_DIR = settings.PROJECT_ROOT / "dbt_project"


def dbt_env() -> dict[str, str]:
    """What the dbt project reads from the environment (see dbt_project/profiles.yml)."""
    current = settings.load()
    return {
        "RISK_LAKEHOUSE_URI": current.lakehouse_uri,
        "RISK_DUCKDB_PATH": str(current.duckdb_path),
        "RISK_DUCKDB_MEMORY_LIMIT": current.duckdb_memory_limit,
    }


def dbt_executable() -> str:
    """The dbt of this interpreter's environment (the project's venv), so PATH need not be set.

    ``sys.prefix``, not ``sys.executable``: a subprocess may run the venv's python by its
    resolved path, outside the venv's bin folder.
    """
    for folder in (Path(sys.prefix) / "bin", Path(sys.executable).parent):
        if (folder / "dbt").exists():
            return str(folder / "dbt")
    return "dbt"


class StallWatch:
    """Kills ``process`` when ``seen()`` has not been called for ``stall_s`` seconds: a dbt
    build that stops reporting events is stuck (DuckDB once hung inside a query with no CPU
    used), and a daily run must fail, not wait forever. ``stalled`` says it was killed."""

    def __init__(self, process: subprocess.Popen, stall_s: float, poll_s: float = 5.0):
        self.process, self.stall_s, self.stalled = process, stall_s, False
        self._last, self._done = time.monotonic(), threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(poll_s,), daemon=True)
        self._thread.start()

    def seen(self) -> None:
        self._last = time.monotonic()

    def _watch(self, poll_s: float) -> None:
        while not self._done.wait(poll_s):
            if self.process.poll() is not None:
                return
            if time.monotonic() - self._last > self.stall_s:
                self.stalled = True
                self.process.kill()
                return

    def __enter__(self) -> StallWatch:
        return self

    def __exit__(self, *_) -> None:
        self._done.set()
