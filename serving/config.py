"""The scoring service's configuration: what ``riskcore/settings.py`` reads from the environment,
as the service uses it (tests build one directly). Secrets (API keys, the hash key) come only
from the environment."""

from __future__ import annotations

from dataclasses import dataclass, field

from riskcore import settings
from riskcore.settings import DEV_API_KEY
from riskcore.targets import Thresholds


@dataclass(frozen=True)
class ServingConfig:
    api_keys: tuple[str, ...] = ()
    dev_mode: bool = False
    redis_url: str = ""
    redis_cluster: bool = False
    redis_timeout_ms: float = 5.0  # a lookup slower than this falls back
    events_timeout_ms: float = 1000.0  # recording events may wait (the caller retries on 503)
    breaker_failures: int = 3  # consecutive store failures that open the circuit ...
    breaker_cooldown_s: float = 1.0  # ... for this long (no lookups), then one probe
    tracking_uri: str = ""
    shadow: bool = False  # score with the challenger too, after the response, log only
    thresholds: Thresholds = field(default_factory=Thresholds)  # the environment's overrides
    holdout_share: float = 0.0  # of would-be declines, approved and marked
    holdout_max_amount: float = 100.0  # never held out above this amount
    max_batch: int = 500
    queue_budget_ms: float = 10.0  # waited longer: transaction-only at once (overload)
    shed_after_ms: float = 50.0  # the oldest waiting longer: new scores get a 503 (overload)
    max_future_s: float = 300.0  # event_ts later than now + this is rejected
    inference_log_uri: str = ""  # Delta table; empty: no inference log (tests of other parts)
    log_flush_s: float = 2.0  # hand-offs to the log's writer (spooled)
    log_commit_s: float = 60.0  # the writer's Delta commits
    log_max_pending: int = 2_000_000  # rows held while the table is unwritable, then dropped
    hash_key: bytes = b""  # keyed hash of customer ids in the inference log
    alias_poll_s: float = 0.0  # reload when an alias moves (a rollback); 0: SIGHUP/admin only
    metrics_public: bool = False  # GET /metrics without an API key

    @classmethod
    def from_environment(cls) -> ServingConfig:
        env = settings.load()
        return cls(
            api_keys=env.api_key_list() or ((DEV_API_KEY,) if env.serving_dev else ()),
            dev_mode=env.serving_dev,
            redis_url=env.redis_url,
            redis_cluster=env.redis_cluster,
            redis_timeout_ms=env.serving_redis_timeout_ms,
            tracking_uri=env.tracking_uri(),
            shadow=env.serving_shadow,
            thresholds=Thresholds.from_settings(env),
            holdout_share=env.holdout_share,
            holdout_max_amount=env.holdout_max_amount,
            alias_poll_s=env.serving_alias_poll_s,
            max_batch=env.serving_max_batch,
            queue_budget_ms=env.serving_queue_budget_ms,
            shed_after_ms=env.serving_shed_after_ms,
            metrics_public=env.serving_metrics_public,
            inference_log_uri=env.inference_log(),
            log_flush_s=env.inference_log_flush_s,
            log_commit_s=env.inference_log_commit_s,
            hash_key=env.hash_key(),
        )

    def check(self) -> None:
        """Refuse to start unsafely: no API key outside dev mode, dev mode in production."""
        if settings.load().is_production and self.dev_mode:
            raise RuntimeError("RISK_SERVING_DEV=1 is refused when RISK_ENV=production")
        if not self.api_keys:
            raise RuntimeError(
                "no API key configured: set RISK_API_KEYS (comma-separated), or RISK_SERVING_DEV=1 "
                f"for a local development server (key {DEV_API_KEY!r})"
            )
        if not self.dev_mode and DEV_API_KEY in self.api_keys:
            raise RuntimeError("the development API key is refused outside dev mode")
        if not self.hash_key:
            raise RuntimeError("no hash key: set RISK_CARD_HASH_KEY")
