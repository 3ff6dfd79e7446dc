"""Models from the MLflow registry: a registered name and alias to its bundle and version.

The alias is resolved to a version first and that version is downloaded, so the version
reported with every score is the one whose trees scored it, even if the alias moves meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from riskcore.model_bundle import ModelBundle


@dataclass
class RegisteredModel:
    name: str  # e.g. risk_fraud
    version: str
    alias: str
    bundle: ModelBundle

    @property
    def label(self) -> str:
        return f"{self.name}/{self.version}"


def load_bundle(model_uri: str, tracking_uri: str) -> ModelBundle:
    """``models:/name/version`` or ``models:/name@alias`` to its bundle, from the registry at
    ``tracking_uri``. The version's storage location is asked of that registry explicitly:
    MLflow resolves a ``models:/`` URI through its global registry (which
    ``mlflow.set_tracking_uri`` would set, writing os.environ as a side effect)."""
    import mlflow  # slow to import: only where a model is loaded
    from mlflow import MlflowClient

    name, _, ref = model_uri.removeprefix("models:/").partition("/")
    if "@" in name:
        name, alias = name.split("@", 1)
        ref = MlflowClient(tracking_uri).get_model_version_by_alias(name, alias).version
    location = MlflowClient(tracking_uri).get_model_version_download_uri(name, ref)
    path = Path(
        mlflow.artifacts.download_artifacts(artifact_uri=location, tracking_uri=tracking_uri)
    )
    return ModelBundle.load(path / "artifacts" / "bundle")


def alias_version(name: str, alias: str, tracking_uri: str) -> str | None:
    """The version an alias names now, or None when it names none (or the model is unknown)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return str(MlflowClient(tracking_uri).get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def load_registered(name: str, alias: str, tracking_uri: str) -> RegisteredModel | None:
    version = alias_version(name, alias, tracking_uri)
    if version is None:
        return None
    return RegisteredModel(
        name, version, alias, load_bundle(f"models:/{name}/{version}", tracking_uri)
    )
