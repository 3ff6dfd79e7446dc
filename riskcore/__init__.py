"""The domain core that the pipeline and the service stand on: feature set, record codec, online
store and real-time state over one Redis transport, transaction-time features, model spec and
bundle, the model registry, typed settings, targets and thresholds.

It imports libraries only, never Dagster, dbt or FastAPI (a contract ``make test`` checks): a
scoring pod installs what scoring needs. See docs/architecture.md.
"""
