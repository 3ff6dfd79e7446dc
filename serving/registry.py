"""Models from the MLflow registry: a registered name and alias to its bundle and version.

The alias is resolved to a version first and that version is downloaded, so the version
reported with every score is the one whose trees scored it, even if the alias moves meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from serving.model_bundle import ModelBundle


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
    """``models:/name@alias`` or ``models:/name/version`` (any model URI) to its bundle."""
    import mlflow  # slow to import: only where a model is loaded

    # The tracking URI is passed, not set: mlflow.set_tracking_uri also writes it into
    # os.environ, where it would outlive this call.
    path = Path(mlflow.artifacts.download_artifacts(model_uri, tracking_uri=tracking_uri))
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
