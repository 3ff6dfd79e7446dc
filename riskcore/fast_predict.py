"""One row at a time through LightGBM's own single-row fast path.

``booster.predict`` parses its parameters, checks the array and sets up OpenMP on every call
(~100 us for one row here). ``LGBM_BoosterPredictForMatSingleRowFast`` does that once, at
``...FastInit``, and then runs the same trees with the same code (~15 us): scores are equal to
``booster.predict``'s bit for bit (tests/test_fast_predict.py). A fast config holds one output
buffer, so an instance serves one thread at a time (the event loop); batches and other threads
use ``booster.predict``.
"""

from __future__ import annotations

import ctypes

import lightgbm as lgb
import numpy as np
from lightgbm.basic import _LIB, _safe_call

_NORMAL, _CONTRIB = 0, 3  # C_API_PREDICT_NORMAL, C_API_PREDICT_CONTRIB
_FLOAT64 = 1  # C_API_DTYPE_FLOAT64
_DOUBLE_P = ctypes.POINTER(ctypes.c_double)


class _FastConfig:
    def __init__(self, booster: lgb.Booster, kind: int, n_features: int, n_out: int):
        self.booster = booster  # the handle must outlive the config
        self.handle = ctypes.c_void_p()
        _safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(kind),
                ctypes.c_int(0),
                ctypes.c_int(-1),
                ctypes.c_int(_FLOAT64),
                ctypes.c_int32(n_features),
                ctypes.c_char_p(b"num_threads=1"),
                ctypes.byref(self.handle),
            )
        )
        # Input and output buffers with their pointers built once: building ctypes arguments
        # per call costs more than the prediction.
        self.row = np.zeros(n_features)
        self.out = np.zeros(n_out)
        self._args = (
            self.handle,
            self.row.ctypes.data_as(ctypes.c_void_p),
            ctypes.byref(ctypes.c_int64()),
            self.out.ctypes.data_as(_DOUBLE_P),
        )

    def __call__(self, row: np.ndarray) -> np.ndarray:
        self.row[:] = row
        _safe_call(_LIB.LGBM_BoosterPredictForMatSingleRowFast(*self._args))
        return self.out

    def __del__(self):
        if self.handle:
            _LIB.LGBM_FastConfigFree(self.handle)


class FastPredictor:
    """``predict`` (probability) and ``contributions`` (SHAP values in log-odds, the last one
    the bias) of one row, equal to ``booster.predict(row)`` and ``pred_contrib=True``."""

    def __init__(self, booster: lgb.Booster):
        self.n_features = booster.num_feature()
        self._score = _FastConfig(booster, _NORMAL, self.n_features, 1)
        self._contrib = _FastConfig(booster, _CONTRIB, self.n_features, self.n_features + 1)

    def _check(self, row: np.ndarray) -> np.ndarray:
        if row.shape != (self.n_features,):
            raise ValueError(f"expected {self.n_features} features, got shape {row.shape}")
        return row

    def predict(self, row: np.ndarray) -> float:
        return float(self._score(self._check(row))[0])

    def contributions(self, row: np.ndarray) -> np.ndarray:
        return self._contrib(self._check(row)).copy()
