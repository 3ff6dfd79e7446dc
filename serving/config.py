"""The scoring service's configuration, from the environment (``RISK_SERVING_*`` and the shared
variables in ``serving/environment.py``). Secrets (API keys, the hash key) come only from here."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from riskcore import settings as environment
from riskcore.targets import TARGETS, Thresholds

# Clearly labelled development key: `make serve` runs without configuration, production does not.
DEV_API_KEY = "dev-api-key-not-for-production"


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _flag(name: str, default: str = "0") -> bool:
    return _env(name, default).lower() in {"1", "true", "yes"}


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
    model_names: dict[str, str] = field(default_factory=lambda: {t: f"risk_{t}" for t in TARGETS})
    champion_alias: str = "champion"
    challenger_alias: str = "challenger"
    shadow: bool = False  # score with the challenger too, after the response, log only
    thresholds: Thresholds = field(default_factory=Thresholds)
    max_batch: int = 500
    max_future_s: float = 300.0  # event_ts later than now + this is rejected
    inference_log_uri: str = ""  # Delta table; empty: no inference log (tests of other parts)
    log_flush_s: float = 2.0
    log_max_pending: int = 2_000_000  # rows held while the table is unwritable, then dropped
    hash_key: bytes = b""  # keyed hash of customer ids in the inference log
    alias_poll_s: float = 0.0  # reload when an alias moves (a rollback); 0: SIGHUP/admin only

    @classmethod
    def from_environment(cls) -> ServingConfig:
        keys = tuple(k.strip() for k in _env("RISK_API_KEYS", "").split(",") if k.strip())
        dev = _flag("RISK_SERVING_DEV")
        return cls(
            api_keys=keys or ((DEV_API_KEY,) if dev else ()),
            dev_mode=dev,
            redis_url=environment.redis_url(),
            redis_cluster=environment.redis_cluster(),
            redis_timeout_ms=float(_env("RISK_SERVING_REDIS_TIMEOUT_MS", "5")),
            tracking_uri=environment.mlflow_tracking_uri(),
            shadow=_flag("RISK_SERVING_SHADOW"),
            thresholds=Thresholds.from_environment(),
            alias_poll_s=float(_env("RISK_SERVING_ALIAS_POLL_S", "30")),
            max_batch=int(_env("RISK_SERVING_MAX_BATCH", "500")),
            inference_log_uri=environment.inference_log_uri(),
            log_flush_s=float(_env("RISK_INFERENCE_LOG_FLUSH_S", "2")),
            hash_key=environment.card_hash_key(),
        )

    def check(self) -> None:
        """Refuse to start unsafely: no API key outside dev mode, dev mode in production."""
        if environment.is_production() and self.dev_mode:
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
