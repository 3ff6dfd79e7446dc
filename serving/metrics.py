"""Prometheus metrics of the scoring service (``GET /metrics``): requests, per-stage latency,
where features came from, decisions, the score distribution, the inference log's health."""

from prometheus_client import Counter, Gauge, Histogram

# 50 us .. 250 ms: a lookup takes ~0.1 ms, a whole score well under 10 ms.
_LATENCY = (
    5e-5,
    1e-4,
    2e-4,
    3e-4,
    5e-4,
    7.5e-4,
    1e-3,
    1.5e-3,
    2e-3,
    3e-3,
    5e-3,
    7.5e-3,
    0.01,
    0.02,
    0.05,
    0.1,
    0.25,
)
_SCORE = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)

REQUESTS = Counter("risk_requests", "HTTP requests by endpoint and status", ["endpoint", "status"])
STAGE_SECONDS = Histogram(
    "risk_stage_seconds",
    "Time per scoring stage (lookup, features, inference, total)",
    ["stage"],
    buckets=_LATENCY,
)
FEATURE_SOURCE = Counter("risk_feature_source", "Scored transactions by feature source", ["source"])
DECISIONS = Counter("risk_decisions", "Decisions", ["decision"])
SCORES = Histogram("risk_score", "Scores served", ["target"], buckets=_SCORE)
SHED = Counter(
    "risk_requests_shed", "Scores refused at once (503) while the service was past its capacity"
)
STORE_ERRORS = Counter("risk_store_errors", "Online-store lookups that failed or timed out")
BREAKER_OPEN = Gauge("risk_store_breaker_open", "1 while lookups are skipped after failures")
MODEL_INFO = Gauge(
    "risk_model_info",
    "The models acting (1) and shadowing (1)",
    ["target", "role", "model", "feature_set_version"],
)
EVENTS = Counter("risk_events", "Purchase events by outcome (real-time state)", ["outcome"])
LOG_ROWS = Counter("risk_inference_log_rows", "Inference-log rows by outcome", ["outcome"])
LOG_PENDING = Gauge("risk_inference_log_pending", "Rows not yet committed to the Delta log")
