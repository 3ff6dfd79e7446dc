"""How the pipeline calls dbt: the project folder, the environment dbt's profiles read, and the
dbt executable of this interpreter's environment."""

from __future__ import annotations

import sys
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
