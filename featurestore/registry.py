"""The one list of snapshot features: the marts' documented columns in the dbt manifest (the
customer snapshot's, and each other entity's: device, merchant, card).

Nothing in Python repeats it. The feature-set version is derived from the definitions: the
columns (name, type, role, window, categories), the SQL of every model and seed that computes
them and of the project macros they use, so a changed feature list or a changed formula gives
a new version.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from resources.dbt_cli import DBT_PROJECT_DIR, dbt_env, dbt_executable
from riskcore.feature_set import FeatureColumn, FeatureSet

PROJECT = "risk_features"
MART = "fct_customer_features_daily"
# The other entities' snapshots (docs/architecture.md#entities): each a feature set of its own
ENTITY_MARTS = {e: f"fct_{e}_features_daily" for e in ("device", "merchant", "card")}
MARTS = {"customer": MART, **ENTITY_MARTS}
MANIFEST = DBT_PROJECT_DIR / "target" / "manifest.json"


def feature_set_version(columns: tuple[FeatureColumn, ...], checksums: list[str]) -> str:
    """``fs_<12 hex>`` of what defines the values: columns (name, type, role, window,
    vocabulary) and the checksums of the SQL behind them; descriptions do not count."""
    payload = json.dumps(
        [
            [(c.name, c.data_type, c.role, c.window, c.categories) for c in columns],
            sorted(checksums),
        ]
    )
    return "fs_" + hashlib.sha256(payload.encode()).hexdigest()[:12]


def _upstream(nodes: dict, unique_id: str) -> set[str]:
    seen, todo = set(), [unique_id]
    while todo:
        node = nodes.get(todo.pop())
        if node is None or node["unique_id"] in seen:
            continue
        seen.add(node["unique_id"])
        todo.extend(node.get("depends_on", {}).get("nodes", []))
    return seen


def _project_macros(manifest: dict, node_ids: set[str]) -> set[str]:
    macros = manifest["macros"]
    todo = [m for uid in node_ids for m in manifest["nodes"][uid]["depends_on"].get("macros", [])]
    seen: set[str] = set()
    while todo:
        macro_id = todo.pop()
        macro = macros.get(macro_id)
        if macro_id in seen or macro is None or macro["package_name"] != PROJECT:
            continue
        seen.add(macro_id)
        todo.extend(macro.get("depends_on", {}).get("macros", []))
    return seen


def manifest_is_stale(manifest_path: Path = MANIFEST) -> bool:
    """True when a dbt file changed after the manifest was written (or it is missing)."""
    if not manifest_path.exists():
        return True
    built = manifest_path.stat().st_mtime
    files = [DBT_PROJECT_DIR / "dbt_project.yml"] + [
        p
        for folder in ("models", "macros", "seeds", "tests")
        for p in (DBT_PROJECT_DIR / folder).rglob("*")
        if p.is_file()
    ]
    return any(p.stat().st_mtime > built for p in files)


def ensure_manifest(manifest_path: Path = MANIFEST) -> Path:
    """`dbt parse` whenever a dbt file changed: the registry and the feature-set version are read
    from this manifest, so it must never lag behind the SQL (nor be missing on a fresh clone)."""
    if manifest_is_stale(manifest_path):
        subprocess.run(
            [dbt_executable(), "parse", "--quiet"],
            cwd=DBT_PROJECT_DIR,
            env=os.environ | dbt_env(),
            check=True,
        )
    return manifest_path


def load_feature_set(manifest_path: Path = MANIFEST, entity: str = "customer") -> FeatureSet:
    """The customer snapshot's feature set, or another entity's (``ENTITIES``: the model's
    ``meta.entity`` in the dbt yml)."""
    if manifest_path == MANIFEST:
        ensure_manifest()
    return feature_set_from_manifest(json.loads(Path(manifest_path).read_text()), entity)


def load_entity_feature_sets(manifest_path: Path = MANIFEST) -> dict[str, FeatureSet]:
    """Every entity's feature set but the customers' (device, merchant, card)."""
    return {e: load_feature_set(manifest_path, entity=e) for e in ENTITY_MARTS}


def _column(doc: dict) -> FeatureColumn:
    meta = doc.get("meta", {})
    return FeatureColumn(
        name=doc["name"],
        data_type=doc.get("data_type") or "",
        role=meta.get("role", "feature"),
        window=meta.get("window"),
        description=doc.get("description", ""),
        categories=tuple(meta["categories"]) if "categories" in meta else None,
        grows_with_time=meta.get("drift") == "age",
    )


def feature_set_from_manifest(manifest: dict, entity: str = "customer") -> FeatureSet:
    nodes = manifest["nodes"]
    mart = MARTS[entity]
    mart_id = next(
        k for k, n in nodes.items() if n["resource_type"] == "model" and n["name"] == mart
    )
    columns = tuple(_column(c) for c in nodes[mart_id]["columns"].values())
    upstream = _upstream(nodes, mart_id)
    models = [f"{uid}:{nodes[uid]['checksum']['checksum']}" for uid in upstream]
    macros = [
        f"{mid}:{hashlib.sha256(manifest['macros'][mid]['macro_sql'].encode()).hexdigest()}"
        for mid in _project_macros(manifest, upstream)
    ]
    return FeatureSet(feature_set_version(columns, models + macros), columns)
