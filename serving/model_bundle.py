"""A target's two models, as registered: behavioural (known customers) and transaction-only
(unknown customers, store outages), each a LightGBM booster with its spec."""

from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np

from serving.model_spec import BEHAVIOURAL, TRANSACTION_ONLY, ModelSpec


@dataclass
class ScoringModel:
    spec: ModelSpec
    booster: lgb.Booster

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return self.booster.predict(
            np.asarray(rows, dtype=np.float64).reshape(-1, len(self.spec.feature_names))
        )


@dataclass
class ModelBundle:
    target: str
    models: dict[str, ScoringModel]  # behavioural | transaction_only

    @property
    def behavioural(self) -> ScoringModel:
        return self.models[BEHAVIOURAL]

    @property
    def transaction_only(self) -> ScoringModel:
        return self.models[TRANSACTION_ONLY]

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for kind, model in self.models.items():
            (folder / f"{kind}.spec.json").write_text(model.spec.to_json())
            model.booster.save_model(str(folder / f"{kind}.lgb.txt"))
        return folder

    @classmethod
    def load(cls, folder: Path) -> "ModelBundle":
        models = {
            kind: ScoringModel(
                ModelSpec.from_json((folder / f"{kind}.spec.json").read_text()),
                lgb.Booster(model_file=str(folder / f"{kind}.lgb.txt")),
            )
            for kind in (BEHAVIOURAL, TRANSACTION_ONLY)
        }
        return cls(models[BEHAVIOURAL].spec.target, models)
