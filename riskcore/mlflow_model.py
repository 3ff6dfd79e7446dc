"""The model bundle as an MLflow pyfunc, so the registry can load and serve it generically."""

from pathlib import Path

import mlflow.pyfunc
import numpy as np

from riskcore.model_bundle import ModelBundle


class RiskModel(mlflow.pyfunc.PythonModel):
    """Input: a DataFrame with the behavioural spec's columns and ``customer_known``. Output:
    the behavioural score for known customers, the transaction-only score for the others."""

    def load_context(self, context):
        self.bundle = ModelBundle.load(Path(context.artifacts["bundle"]))

    def predict(self, context, model_input, params=None):
        known = model_input["customer_known"].to_numpy(bool)
        out = np.empty(len(model_input))
        for model, mask in (
            (self.bundle.behavioural, known),
            (self.bundle.transaction_only, ~known),
        ):
            if mask.any():
                out[mask] = model.predict(model_input.loc[mask, list(model.spec.feature_names)])
        return out
