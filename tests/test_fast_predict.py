"""LightGBM's single-row fast path gives exactly ``booster.predict``'s scores and SHAP
contributions (the serving path is proven equal to the model, not approximately so)."""

import threading

import lightgbm as lgb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from riskcore.fast_predict import FastPredictor

N_FEATURES = 12


@pytest.fixture(scope="module")
def booster() -> lgb.Booster:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4000, N_FEATURES))
    x[rng.random(x.shape) < 0.1] = np.nan
    y = np.nan_to_num(x[:, 0]) + 0.5 * np.nan_to_num(x[:, 3]) + rng.normal(size=4000) > 1
    params = {"objective": "binary", "verbose": -1, "num_threads": 1, "seed": 1}
    data = lgb.Dataset(x, y.astype(int), categorical_feature=[5])
    return lgb.train(params, data, 150)


rows = hnp.arrays(
    np.float64,
    N_FEATURES,
    elements=st.one_of(st.floats(-1e6, 1e6), st.just(np.nan), st.sampled_from([0.0, -0.0, 3.0])),
)


@settings(max_examples=300, deadline=None)
@given(row=rows)
def test_fast_scores_and_contributions_equal_booster_predict(booster, row):
    fast = FastPredictor(booster)
    assert fast.predict(row) == booster.predict(row.reshape(1, -1))[0]
    expected = booster.predict(row.reshape(1, -1), pred_contrib=True)[0]
    assert np.array_equal(fast.contributions(row), expected)


def test_a_wrong_width_is_refused(booster):
    with pytest.raises(ValueError, match="expected 12 features"):
        FastPredictor(booster).predict(np.zeros(11))


def test_threads_get_their_own_predictor(booster):
    """A fast predictor holds one buffer: ``ScoringModel.fast`` is per thread."""
    from riskcore.model_bundle import ScoringModel

    model = ScoringModel(spec=None, booster=booster)  # type: ignore[arg-type]
    seen: list[FastPredictor] = []
    thread = threading.Thread(target=lambda: seen.append(model.fast))
    thread.start()
    thread.join()
    assert seen[0] is not model.fast and model.fast is model.fast
