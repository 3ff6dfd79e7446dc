"""A target's models, as registered, one per tier (``riskcore/model_spec.py``): behavioural
(known customers), transaction-only (no customer history) and request-only (the store cannot
be read; bundles registered before the tiers have none: their transaction-only model reads no
store). Each is a LightGBM booster with its spec; the bundle carries the feature sets its
models read (the customers' and each other entity's: their columns, kinds and vocabularies,
so serving decodes online records with them) and the review and decline thresholds chosen by
cost on its validation weeks (``riskcore/costs.py``; serving decides with them)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import lightgbm as lgb
import numpy as np

from riskcore.fast_predict import FastPredictor
from riskcore.feature_set import FeatureSet
from riskcore.model_spec import BEHAVIOURAL, KINDS, REQUEST_ONLY, TRANSACTION_ONLY, ModelSpec


@dataclass
class ScoringModel:
    spec: ModelSpec
    booster: lgb.Booster
    _local: threading.local = field(default_factory=threading.local, init=False, repr=False)

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return self.booster.predict(
            np.asarray(rows, dtype=np.float64).reshape(-1, len(self.spec.feature_names))
        )

    @property
    def fast(self) -> FastPredictor:
        """The single-row path, one per thread (a fast predictor holds one output buffer)."""
        fast = getattr(self._local, "fast", None)
        if fast is None:
            fast = self._local.fast = FastPredictor(self.booster)
        return fast


@dataclass
class ModelBundle:
    target: str
    models: dict[str, ScoringModel]  # behavioural | transaction_only [| request_only]
    feature_set: FeatureSet | None = None
    # {"review", "decline", "costs", "chosen_on"}; None for a bundle saved before (built-in)
    thresholds: dict | None = None
    entity_feature_sets: dict[str, FeatureSet] = field(default_factory=dict)

    @property
    def behavioural(self) -> ScoringModel:
        return self.models[BEHAVIOURAL]

    @property
    def transaction_only(self) -> ScoringModel:
        return self.models[TRANSACTION_ONLY]

    @property
    def request_only(self) -> ScoringModel:
        """What scores when the store cannot be read (an older bundle's transaction-only
        model read no store)."""
        return self.models.get(REQUEST_ONLY) or self.transaction_only

    @cached_property
    def entity_versions(self) -> dict[str, str]:
        """The other entities whose records the models read: entity -> feature-set version."""
        return {e: v for m in self.models.values() for e, v in m.spec.entity_feature_sets.items()}

    @cached_property
    def descriptions(self) -> dict[str, str]:
        """Every snapshot feature's meaning, by the name a spec gives it (reason codes)."""
        out = {
            c.name: c.description for c in (self.feature_set.features if self.feature_set else ())
        }
        for entity, fs in self.entity_feature_sets.items():
            out |= {f"{entity}_{c.name}": f"{entity}: {c.description}" for c in fs.features}
        return out

    @cached_property
    def feature_set_version(self) -> str:
        return self.behavioural.spec.feature_set_version

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for kind, model in self.models.items():
            (folder / f"{kind}.spec.json").write_text(model.spec.to_json())
            model.booster.save_model(str(folder / f"{kind}.lgb.txt"))
        if self.feature_set is not None:
            (folder / "feature_set.json").write_text(self.feature_set.to_json())
        for entity, fs in self.entity_feature_sets.items():
            (folder / f"feature_set.{entity}.json").write_text(fs.to_json())
        if self.thresholds is not None:
            (folder / "thresholds.json").write_text(json.dumps(self.thresholds, indent=1))
        return folder

    @classmethod
    def load(cls, folder: Path) -> ModelBundle:
        models = {
            kind: ScoringModel(
                ModelSpec.from_json((folder / f"{kind}.spec.json").read_text()),
                lgb.Booster(model_file=str(folder / f"{kind}.lgb.txt")),
            )
            for kind in KINDS
            if (folder / f"{kind}.spec.json").exists()
        }
        fs_file = folder / "feature_set.json"
        feature_set = FeatureSet.from_json(fs_file.read_text()) if fs_file.exists() else None
        entities = {
            f.name.split(".")[1]: FeatureSet.from_json(f.read_text())
            for f in sorted(folder.glob("feature_set.*.json"))
        }
        chosen = folder / "thresholds.json"
        thresholds = json.loads(chosen.read_text()) if chosen.exists() else None
        return cls(models[BEHAVIOURAL].spec.target, models, feature_set, thresholds, entities)
