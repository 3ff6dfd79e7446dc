"""The one model registry (docs/architecture.md#registry): model names, aliases, version tags,
the MLflow client built from the configured URI, and what is done to versions: mark a
challenger, promote, keep, roll back, load.

Every MLflow client of the project is built here, always with an explicit tracking URI:
``mlflow.set_tracking_uri`` would set MLflow's global registry (and write os.environ as a side
effect), and a ``models:/`` URI resolved there would silently read another registry.

An alias is resolved to a version before that version is downloaded, so the version reported
with every score is the one whose trees scored it, even if the alias moves meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from riskcore.model_bundle import ModelBundle
from riskcore.targets import TARGETS

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

# Aliases: serving acts on the champion, and on the canary for its share of customers; the
# challenger is scored in shadow only (docs/architecture.md#rollout).
CHAMPION, CHALLENGER, CANARY = "champion", "challenger", "canary"
# Version tags: the version a champion replaced (rollback's way back), why it was rolled back,
# and the gate's decision on it.
REPLACES, ROLLED_BACK, GATE = "replaces", "rolled_back", "gate"
# A canary's: its share of customers, when it started acting, and how it ended (halted with
# the reason, promoted, or superseded by a newer canary).
CANARY_SHARE, CANARY_SINCE, CANARY_END = "canary_share", "canary_since", "canary_end"


def model_name(target: str) -> str:
    """The registered model of a target: ``risk_fraud``, ``risk_default``."""
    return f"risk_{target}"


MODEL_NAMES = {target: model_name(target) for target in TARGETS}


@dataclass
class RegisteredModel:
    name: str  # e.g. risk_fraud
    version: str
    alias: str
    bundle: ModelBundle

    @property
    def label(self) -> str:
        return f"{self.name}/{self.version}"


class ModelRegistry:
    """The MLflow registry at ``tracking_uri``. MLflow is imported on first use: it is slow to
    import, and a scoring pod needs it only to load models."""

    def __init__(self, tracking_uri: str):
        self.tracking_uri = tracking_uri

    @classmethod
    def from_settings(cls) -> ModelRegistry:
        from riskcore import settings

        return cls(settings.load().tracking_uri())

    @cached_property
    def client(self) -> MlflowClient:
        from mlflow import MlflowClient

        return MlflowClient(self.tracking_uri)

    # -- reading ----------------------------------------------------------------------------

    def version(self, name: str, alias: str = CHAMPION) -> ModelVersion | None:
        """The version an alias names now, or None when it names none (or the model is
        unknown)."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(name, alias)
        except MlflowException:
            return None

    def alias_version(self, name: str, alias: str = CHAMPION) -> str | None:
        found = self.version(name, alias)
        return None if found is None else str(found.version)

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of a model, oldest first ([] for an unknown model)."""
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.search_model_versions(f"name = '{name}'")
        except MlflowException:
            return []
        return sorted(found, key=lambda v: int(v.version))

    def model_version(self, name: str, version: str) -> ModelVersion:
        return self.client.get_model_version(name, version)

    def run_metrics(self, run_id: str) -> dict[str, float]:
        return dict(self.client.get_run(run_id).data.metrics)

    def run_tags(self, run_id: str) -> dict[str, str]:
        return dict(self.client.get_run(run_id).data.tags)

    def artifacts(self, run_id: str, path: str) -> Path:
        """A run's artifact (file or folder), downloaded from this registry's store."""
        import mlflow

        return Path(
            mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=path, tracking_uri=self.tracking_uri
            )
        )

    def load_bundle(self, name: str, ref: str) -> ModelBundle:
        """A version (``"3"``) or an alias (``"@champion"``) of ``name`` to its bundle."""
        import mlflow

        if ref.startswith("@"):
            found = self.alias_version(name, ref[1:])
            if found is None:
                raise LookupError(f"no @{ref[1:]} of {name} in {self.tracking_uri}")
            ref = found
        location = self.client.get_model_version_download_uri(name, ref)
        path = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=location, tracking_uri=self.tracking_uri
            )
        )
        return ModelBundle.load(path / "artifacts" / "bundle")

    def load(self, name: str, alias: str) -> RegisteredModel | None:
        """The version an alias names, loaded; None when the alias names none."""
        version = self.alias_version(name, alias)
        if version is None:
            return None
        return RegisteredModel(name, version, alias, self.load_bundle(name, version))

    def previous_champion(self, name: str) -> tuple[str, str | None] | None:
        """(the champion's version, the version it replaced or None for a first champion);
        None when there is no champion."""
        champion = self.version(name, CHAMPION)
        if champion is None:
            return None
        return str(champion.version), champion.tags.get(REPLACES)

    # -- changing ---------------------------------------------------------------------------

    def mark_challenger(self, name: str, version: str) -> None:
        self.client.set_registered_model_alias(name, CHALLENGER, version)

    def promote(self, name: str, version: str, decision: str, replaces: str | None) -> None:
        """Make ``version`` the champion; it remembers the version it replaced (the rollback's
        way back) and why the gate promoted it. A canary of another version stops acting: it
        was compared with the champion now replaced."""
        # The way back first: a rollback that reads the new champion finds what it replaced.
        if replaces is not None:
            self.client.set_model_version_tag(name, version, REPLACES, replaces)
        self.client.set_registered_model_alias(name, CHAMPION, version)
        self._supersede_canary(name, version, f"superseded: v{version} promoted")
        self.record_decision(name, version, f"champion: {decision}")

    def record_decision(self, name: str, version: str, decision: str) -> None:
        """The gate's decision as a tag and as the version's description (what the MLflow UI
        shows first), so a reader sees why a version is champion or not."""
        self.client.set_model_version_tag(name, version, GATE, decision)
        self.client.update_model_version(name, version, description=decision)

    def canary(self, name: str) -> tuple[str, float, str] | None:
        """(version, share of customers, since: ISO time) of the canary acting now; None when
        there is none."""
        found = self.version(name, CANARY)
        if found is None:
            return None
        tags = found.tags
        return str(found.version), float(tags.get(CANARY_SHARE, 0)), tags.get(CANARY_SINCE, "")

    def start_canary(self, name: str, version: str, share: float, since: str, why: str) -> None:
        """``version`` acts on ``share`` of customers beside the champion. A canary already
        running is superseded (it ends: the newer challenger passed the same gate)."""
        self._supersede_canary(name, version, f"superseded by v{version}")
        self.client.set_model_version_tag(name, version, CANARY_SHARE, f"{share:g}")
        self.client.set_model_version_tag(name, version, CANARY_SINCE, since)
        self.client.set_registered_model_alias(name, CANARY, version)
        self.record_decision(name, version, f"canary on {share:.0%} of customers: {why}")

    def end_canary(
        self, name: str, reason: str, *, halted: bool = True, version: str | None = None
    ) -> str | None:
        """Take the canary off traffic (share 0: its alias removed), the reason on the version.
        ``version``: only that one (a check judged it; a newer canary is left alone). Returns
        the version ended, None when there was none."""
        running = self.canary(name)
        if running is None or (version is not None and running[0] != version):
            return None
        version = running[0]
        self.client.delete_registered_model_alias(name, CANARY)
        self.client.set_model_version_tag(name, version, CANARY_SHARE, "0")
        self.client.set_model_version_tag(name, version, CANARY_END, reason)
        self.record_decision(name, version, f"canary {'halted' if halted else 'ended'}: {reason}")
        return version

    def _supersede_canary(self, name: str, version: str, reason: str) -> None:
        """End a canary of another version than ``version`` (not halted: replaced)."""
        running = self.canary(name)
        if running is not None and running[0] != version:
            self.end_canary(name, reason, halted=False)

    def promote_canary(self, name: str, version: str, reason: str) -> bool:
        """The canary ``version`` becomes the champion (it takes all traffic); the champion it
        replaces is remembered, so the rollback path works as after any promotion. False, and
        nothing changed, when the canary is no longer that version (a newer one superseded
        it, or another check acted first)."""
        running = self.canary(name)
        if running is None or running[0] != version:
            return False
        replaces = self.alias_version(name, CHAMPION)
        # The champion moves first: serving ignores a canary equal to the champion, so its
        # customers never fall back to the old champion in between.
        self.promote(name, version, f"canary promoted: {reason}", replaces=replaces)
        self.client.delete_registered_model_alias(name, CANARY)
        self.client.set_model_version_tag(name, version, CANARY_END, f"promoted: {reason}")
        return True

    def roll_back(self, name: str, reason: str, judged: str | None = None) -> str | None:
        """Move the champion alias back to the version the champion replaced, and tag the
        demoted version with the reason (serving picks the alias change up within its poll
        interval). Returns the version now champion. ``judged``: the champion the reason is
        about; if another version became champion meanwhile (a promotion from a training or
        the canary check, which run beside the daily job), nothing moves and None is returned:
        the next check judges the new one."""
        current = self.previous_champion(name)
        if judged is not None and (current is None or current[0] != judged):
            return None
        if current is None or current[1] is None:
            raise ValueError(f"{name}: no champion that replaced a version: nothing to roll back")
        version, previous = current
        self.client.set_registered_model_alias(name, CHAMPION, previous)
        self.client.set_model_version_tag(name, version, ROLLED_BACK, reason)
        self.client.update_model_version(name, version, description=f"rolled back: {reason}")
        self.client.update_model_version(
            name, previous, description=f"champion again: v{version} was rolled back ({reason})"
        )
        # A canary was judged against the champion just demoted: it stops acting.
        reason = f"the champion v{version} it was compared with was rolled back"
        self.end_canary(name, reason, halted=False)
        return previous
