"""The feature store's SDK, for a notebook or a script: point-in-time features for any entity
rows, the online store's values, and the catalog of features. ``python -m featurestore`` is
its command line (featurestore/__main__.py)."""

from featurestore.catalog import FeatureInfo, feature, features
from featurestore.historical import (
    FeatureStoreError,
    FeatureStoreWarning,
    Written,
    historical_features,
)
from featurestore.online import online_features, store_status

__all__ = [
    "FeatureInfo",
    "FeatureStoreError",
    "FeatureStoreWarning",
    "Written",
    "feature",
    "features",
    "historical_features",
    "online_features",
    "store_status",
]
