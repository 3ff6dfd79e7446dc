"""Every setting of the project, once: type, default and meaning, read from the environment.

One data folder (``RISK_DATA_DIR``, default ``./data``) holds the lakehouse, the DuckDB file,
MLflow's store and Dagster's home, so ``make clean`` is one ``rm -rf``; each can be pointed
elsewhere (an ``s3://`` lakehouse, a tracking server, a Redis Cluster) by its own variable.
Secrets (API keys, the hash key) come only from here, never from a file in the repository.

``load()`` reads the environment again whenever it (or the working folder) changed since the
last read (tests change it), so nothing caches a stale value; a bad value fails naming the
variable and the value: ``RISK_DAILY_HOUR_UTC='2am': Input should be a valid integer``.
``python -m riskcore.settings`` prints the README's configuration table, which a test keeps
equal to this module.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Clearly labelled development keys: the demo runs without configuration, production does not.
DEV_CARD_HASH_KEY = "dev-only-card-hash-key-do-not-use-in-production"
DEV_API_KEY = "dev-api-key-not-for-production"


# A range of whole days, `shortest,longest` in the environment.
DayRange = Annotated[tuple[int, int], NoDecode]


class SettingsError(ValueError):
    """A variable of the environment has a value the project cannot use."""


def _var(
    default: Any,
    description: str,
    *,
    env: str | None = None,
    shown: str | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
):
    """A setting: its default, what it means, its variable when not ``RISK_<FIELD>``, the
    default as the README shows it when it is derived from another setting, and its range
    (a value outside it names the variable, as a bad type does)."""
    extra: dict[str, Any] = {}
    if shown is not None:
        extra["shown"] = shown
    return Field(
        default,
        description=description,
        ge=ge,
        gt=gt,
        le=le,
        lt=lt,
        validation_alias=AliasChoices(env) if env else None,
        json_schema_extra=extra or None,
    )


SHARE: dict[str, float] = {"ge": 0.0, "le": 1.0}  # the range of a share or a rate


class Settings(BaseSettings):
    """The environment, typed. Variables are ``RISK_<FIELD>`` unless a field names its own."""

    model_config = SettingsConfigDict(env_prefix="RISK_", extra="ignore", frozen=True)

    # Where state lives
    data_dir: Path = _var(
        PROJECT_ROOT / "data",
        "all local state: `lakehouse/`, `warehouse.duckdb`, `dagster_home/`, `landing/`, "
        "`mlflow/`, `online_store/`",
        shown="./data (git-ignored)",
    )
    lakehouse_uri: str = _var(
        "",
        "root of the Delta tables; any deltalake URI (`s3://...`)",
        shown="$RISK_DATA_DIR/lakehouse",
    )
    landing_dir: Path | None = _var(
        None,
        "landing files: `<table>/<YYYY-MM-DD>/` with `*.parquet` or `*.csv` files",
        shown="$RISK_DATA_DIR/landing",
    )
    duplicate_window_days: int = _var(
        30,
        "a transaction id already stored within this many days of a day being ingested is a "
        "duplicate (quarantined); the check reads only those days, so its cost does not grow "
        "with the history: a repeat from further away is stored twice (the training set keeps "
        "its first)",
        ge=0,
        le=3650,
    )
    duckdb_path: Path | None = _var(
        None,
        "dbt-duckdb's database (rolled-up days, snapshots being built)",
        shown="$RISK_DATA_DIR/warehouse.duckdb",
    )
    duckdb_memory_limit: str = _var("3GB", "DuckDB spills past it")
    dbt_stall_s: float = _var(
        600.0,
        "a dbt build that reports nothing for this many seconds is stuck (DuckDB has hung "
        "inside a query here): it is killed and the step runs once more",
    )
    dagster_home: Path | None = _var(
        None,
        "Dagster's instance (concurrency pools: one warehouse writer, one registry changer)",
        env="DAGSTER_HOME",
        shown="$RISK_DATA_DIR/dagster_home (make)",
    )

    # The embedded generator and the daily schedule
    synthetic: bool = _var(
        True, "feed the raw tables from the embedded generator (`0`: landing files only)"
    )
    customers: int = _var(20_000, "the generator's number of customers", shown="20000")
    seed: int = _var(7, "the generator's seed: a seed reproduces every day exactly")
    chargeback_delay_days: DayRange = _var(
        (2, 60),
        "when the generator's chargebacks (fraud labels) arrive, in days after the purchase: "
        "`shortest,longest`, skewed towards the shortest; a data folder keeps one setting "
        "(`make simulate` sets `1,3`)",
        shown="2,60",
    )
    default_delay_days: DayRange = _var(
        (30, 90),
        "when the generator's BNPL default labels arrive, in days after the purchase: "
        "`shortest,longest`, as above",
        shown="30,90",
    )
    start_date: date | None = _var(
        None,
        "first day of data (the first daily partition); empty: chosen when the data folder is "
        "first used, so that the demo's window ends at `RISK_DEMO_END`, then kept",
        shown="RISK_DEMO_END - RISK_DEMO_DAYS + 1, kept in $RISK_DATA_DIR/calendar.json",
    )
    demo_end: date | None = _var(
        None,
        "last day of data `make demo` builds (tests and pinned figures use fixed dates)",
        shown="yesterday (UTC)",
    )
    drift_from: date | None = _var(
        None, "day from which the generator injects drift (`make drift-demo` sets it)"
    )
    demo_days: int = _var(120, "days of history a new data folder starts with")
    clock: datetime | None = _var(
        None,
        "a fixed now for the pipeline's time checks (ISO time, UTC): `make simulate` moves it "
        "a day at a time; empty: the real clock",
        shown="empty (the real clock)",
    )
    automations: bool = _var(
        True,
        "schedules and sensors run from the start (`0`: off until turned on in the UI)",
    )
    daily_hour_utc: int = _var(
        2, "UTC hour of the daily schedule (the day that ended becomes a snapshot)", shown="2"
    )

    # Secrets and environment
    env: str = _var("development", "`production` refuses development keys and dev mode")
    card_hash_key: SecretStr | None = _var(
        None,
        "key of card hashes and every other keyed hash (customer ids in the inference log); "
        "with `RISK_ENV=production` the project refuses to run without it",
        shown="a labelled development key",
    )

    # The online store
    redis_url: str = _var(
        "",
        "the online store: `redis://user:password@host:port/db`, `rediss://...?ssl_ca_certs=` "
        "for TLS, comma-separated seed nodes for a cluster; empty: a local `redis-server` "
        "keeping its data in `$RISK_DATA_DIR/online_store`",
        env="REDIS_URL",
    )
    redis_cluster: bool = _var(
        False, "`1`: `REDIS_URL` names Redis Cluster seed nodes", env="REDIS_CLUSTER"
    )
    online_ttl_s: int = _var(
        3 * 86_400,
        "lifetime of an online-store generation that no newer one replaces",
        shown="259200 (3 days)",
    )

    online_rollback_window_s: int = _var(
        6 * 3600,
        "how long a replaced generation stays in Redis, so an operator can roll the pointer "
        "back to it (`make online-rollback`); Redis holds two generations meanwhile",
        shown="21600 (6 h)",
    )

    # The model registry
    mlflow_tracking_uri: str = _var(
        "",
        "MLflow tracking and model registry",
        env="MLFLOW_TRACKING_URI",
        shown="sqlite:///$RISK_DATA_DIR/mlflow/mlflow.db",
    )
    mlflow_artifacts: Path | None = _var(
        None,
        "where new experiments keep their artifacts",
        shown="$RISK_DATA_DIR/mlflow/artifacts",
    )

    # The scoring service
    api_keys: SecretStr = _var(
        SecretStr(""),
        "the scoring service's API keys (comma-separated, header `X-API-Key`); none: it "
        "refuses to start unless `RISK_SERVING_DEV=1`",
        shown="none",
    )
    serving_dev: bool = _var(
        False,
        f"dev mode: the labelled key `{DEV_API_KEY}`; refused with `RISK_ENV=production` "
        "(`make serve` sets `1` when no keys are set)",
    )
    serving_host: str = _var("127.0.0.1", "where uvicorn listens")
    serving_port: int = _var(8000, "the service's port")
    serving_workers: int = _var(1, "uvicorn workers: one per pod (scale with pods)")
    serving_keep_alive_s: int = _var(75, "HTTP keep-alive of idle connections")
    serving_redis_timeout_ms: float = _var(
        5.0, "a lookup slower than this falls back to the request-only models"
    )
    serving_alias_poll_s: float = _var(
        30.0,
        "how often serving checks the registry aliases and reloads when one moved (a "
        "rollback); `0`: only on SIGHUP or `POST /admin/reload`",
    )
    serving_shadow: bool = _var(
        False,
        "`1`: the `challenger` also scores every request, after the response; logged, never "
        "acted on",
    )
    serving_max_batch: int = _var(500, "most transactions in one `POST /score/batch`")
    serving_queue_budget_ms: float = _var(
        10.0,
        "a single score that has waited longer than this in the service (past its capacity) "
        "is answered at once by the request-only models, without a lookup "
        "(feature_source `fallback_overload`)",
    )
    serving_shed_after_ms: float = _var(
        50.0,
        "while the oldest waiting score has waited longer than this, new scores are refused "
        "at once (503 with Retry-After): past capacity for longer than a stall",
    )
    serving_metrics_public: bool = _var(
        False,
        "`1`: `GET /metrics` is served without an API key (for a scraper on a private "
        "network); default: the key is required",
    )
    fraud_review: float | None = _var(
        None,
        "overrides the fraud model's review threshold (chosen by cost with each version)",
        shown="the model's",
    )
    fraud_decline: float | None = _var(
        None, "overrides the fraud model's decline threshold", shown="the model's"
    )
    default_review: float | None = _var(
        None, "overrides the default model's review threshold", shown="the model's"
    )
    default_decline: float | None = _var(
        None, "overrides the default model's decline threshold", shown="the model's"
    )
    holdout_share: float = _var(
        0.0,
        "share of would-be declines approved anyway and marked (`holdout`), so outcomes behind "
        "the decline line are observed; `0`: off",
        **SHARE,
    )
    holdout_max_amount: float = _var(
        100.0, "a purchase above this amount is never held out, whatever the share", ge=0
    )
    inference_log_uri: str | None = _var(
        None,
        "the inference log (Delta); empty: off",
        shown="$RISK_LAKEHOUSE_URI/serving/inference_log",
    )
    inference_log_flush_s: float = _var(
        2.0, "seconds between hand-offs of decisions to the inference log's writer (spooled)", gt=0
    )
    inference_log_commit_s: float = _var(
        60.0,
        "seconds between the inference log's Delta commits (one file per day partition each: "
        "1,440 a day at 60 s); what is spooled meanwhile is on local disk, not lost",
        gt=0,
    )
    inference_log_spool_dir: Path | None = _var(
        None,
        "local folder where the log's writer spools decisions until their commit (a spool left "
        "by a writer that died is committed by the next)",
        shown="$RISK_DATA_DIR/serving/log_spool",
    )
    events_stream: str = _var("risk:events", "the Redis Stream `make consume` reads events from")
    events_group: str = _var("realtime", "the stream's consumer group")

    # Training: one configuration, whatever starts a retrain (schedule, sensor, UI, demo)
    fraud_maturity_days: int = _var(
        45, "days a fraud label (chargeback) needs to arrive; younger purchases are left out"
    )
    default_maturity_days: int = _var(
        60,
        "days a BNPL default label needs to arrive (the demo's 120 days leave 30 matured days "
        "at 90; a longer history sets 90)",
    )
    valid_weeks: int = _var(2, "validation weeks of each target, before its test weeks")
    test_weeks: int = _var(2, "test weeks of each target: its newest matured weeks")
    availability_lag_h: float = _var(
        6.0, "hours after its as_of a snapshot is usable (the 02:00-06:00 batch window)"
    )
    censor_declines: bool = _var(
        False,
        "`1`: train as production must, without the outcomes of purchases serving declined "
        "(the synthetic source labels them anyway), the random holdout's weighted by 1 / its "
        "share",
    )
    negative_share: float = _var(
        1.0,
        "share of the training weeks' negatives a model learns from, each weighted by 1 / "
        "the share so scores stay calibrated (every positive is kept; validation and test "
        "weeks are never sampled); `1`: all. At millions of purchases, `0.1` trains ~10x "
        "faster on fraud's 0.3% bad rate",
        gt=0.0,
        le=1.0,
    )
    negative_seed: int = _var(7, "the seed of the negative sampling draw (logged in MLflow)")
    promotion_tolerance: float = _var(
        0.005, "test AUC a challenger may lose against the champion and still be promoted"
    )
    canary_share: float = _var(
        0.05,
        "share of customers a challenger that passed the gate acts on (the canary) before "
        "it takes all traffic; `0`: promoted at once; below 1 (the champion must serve some "
        "customers to be compared with)",
        ge=0.0,
        lt=1.0,
    )
    canary_clean_hours: float = _var(
        24.0, "hours a canary must run within its limits before it is promoted to full"
    )
    canary_min_decisions: int = _var(
        500, "canary decisions needed before it can be promoted (its limits act from 100)"
    )
    canary_max_decline_rate_delta: float = _var(
        0.02, "a canary declining this much more of its purchases than the champion is halted"
    )
    canary_max_review_rate_delta: float = _var(
        0.05, "a canary reviewing this much more of its purchases than the champion is halted"
    )
    canary_max_score_psi: float = _var(
        0.2, "a canary whose score distribution has this PSI against the champion's is halted"
    )
    canary_max_bad_rate_delta: float = _var(
        0.01,
        "a canary whose approved purchases turn out bad (on the labels so far) this much more "
        "often than the champion's is halted",
    )
    canary_check_minutes: float = _var(15.0, "how often the canary sensor compares a canary")
    review_cost: float = _var(
        5.0, "what a manual review costs (thresholds are chosen by cost)", ge=0
    )
    max_review_rate: float = _var(
        0.01,
        "most of a target's purchases the chosen thresholds send to review (team capacity)",
        **SHARE,
    )
    false_decline_margin: float = _var(
        0.03,
        "fraud: share of a good purchase's amount lost when it is declined (the margin)",
        **SHARE,
    )
    bnpl_margin: float = _var(
        0.06,
        "default: share of an instalment plan's amount earned (the merchant fee), lost when a "
        "plan that would have been repaid is declined",
        **SHARE,
    )
    churn_cost: float = _var(
        10.0,
        "fraud: what declining a good customer's purchase costs besides the margin (churn)",
        ge=0,
    )
    loss_given_default: float = _var(
        0.7,
        "default: share of an instalment plan's amount lost when it defaults",
        **SHARE,
    )

    # Monitoring
    reports_url: str = _var(
        "http://127.0.0.1:3001",
        "where `$RISK_DATA_DIR/reports` is served (`make dev` serves it): the drift reports' "
        "links in the Dagster UI",
    )
    report_retention_days: int = _var(30, "days of drift reports kept")
    alert_webhook: SecretStr = _var(
        SecretStr(""),
        "URL alerts are POSTed to as JSON (a failed run, a failed check, a stale online store, a "
        "rollback); empty: logged only",
        shown="empty",
    )
    freshness_max_age_h: float = _var(
        26.0, "how old the newest raw day, snapshot and online generation may be"
    )
    min_auc_fraud: float = _var(0.8, "the model-quality check's floor for the fraud model")
    min_auc_default: float = _var(0.6, "the model-quality check's floor for the default model")

    @field_validator(
        "start_date",
        "demo_end",
        "clock",
        "drift_from",
        "landing_dir",
        "duckdb_path",
        "dagster_home",
        "card_hash_key",
        "mlflow_artifacts",
        "fraud_review",
        "fraud_decline",
        "default_review",
        "default_decline",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("chargeback_delay_days", "default_delay_days", mode="before")
    @classmethod
    def _day_range(cls, value: Any) -> Any:
        """`shortest,longest` (the environment's form) or a pair; 0 <= shortest <= longest."""
        if isinstance(value, str):
            try:
                value = tuple(int(part) for part in value.split(","))
            except ValueError:
                raise ValueError("expected `shortest,longest` in whole days, e.g. `2,60`") from None
        if len(value) != 2 or not 0 <= int(value[0]) <= int(value[1]):
            raise ValueError("expected `shortest,longest` in whole days, 0 <= shortest <= longest")
        return value

    @model_validator(mode="after")
    def _derive(self) -> Settings:
        """Defaults that live under the data folder (or the lakehouse) follow it."""
        data = self.data_dir.resolve()
        derived = {"data_dir": data}
        if not self.lakehouse_uri:
            derived["lakehouse_uri"] = str(data / "lakehouse")
        derived["lakehouse_uri"] = derived.get("lakehouse_uri", self.lakehouse_uri).rstrip("/")
        under_data = {
            "landing_dir": data / "landing",
            "duckdb_path": data / "warehouse.duckdb",
            "mlflow_artifacts": data / "mlflow" / "artifacts",
            "inference_log_spool_dir": data / "serving" / "log_spool",
        }
        derived |= {name: path for name, path in under_data.items() if getattr(self, name) is None}
        if not self.mlflow_tracking_uri:
            derived["mlflow_tracking_uri"] = f"sqlite:///{data / 'mlflow' / 'mlflow.db'}"
        for name, value in derived.items():
            object.__setattr__(self, name, value)
        return self

    # Derived values
    def first_day(self) -> date:
        """The first day of data: RISK_START_DATE, or the data folder's calendar, fixed when the
        folder is first used (so the daily partitions do not slide with the clock)."""
        if self.start_date is not None:
            return self.start_date
        calendar = self.data_dir / "calendar.json"
        if calendar.exists():
            return date.fromisoformat(json.loads(calendar.read_text())["first_day"])
        first = self.last_demo_day() - timedelta(days=self.demo_days - 1)
        calendar.parent.mkdir(parents=True, exist_ok=True)
        calendar.write_text(json.dumps({"first_day": first.isoformat()}))
        return first

    def now(self) -> datetime:
        """The pipeline's now: RISK_CLOCK when a simulation sets it, else the real clock."""
        return _clock_or_now(self.clock)

    def last_demo_day(self) -> date:
        """The newest day `make demo` builds: RISK_DEMO_END, or yesterday by the clock."""
        return self.demo_end or self.now().date() - timedelta(days=1)

    @property
    def is_production(self) -> bool:
        return self.env.lower() in {"prod", "production"}

    @property
    def embedded_redis_dir(self) -> Path:
        """Where the embedded online store keeps its data (when no REDIS_URL is given)."""
        return self.data_dir / "online_store"

    def inference_log(self, lakehouse_root: str | None = None) -> str:
        """Where serving logs its decisions and monitoring reads them: RISK_INFERENCE_LOG_URI
        (empty: no log), else ``serving/inference_log`` under the lakehouse root."""
        if self.inference_log_uri is not None:
            return self.inference_log_uri
        return f"{(lakehouse_root or self.lakehouse_uri).rstrip('/')}/serving/inference_log"

    def table_uri(self, name: str) -> str:
        return f"{self.lakehouse_uri}/{name}"

    def hash_key(self) -> bytes:
        """The key for card hashes and every other keyed hash. Production refuses to run on
        the development key."""
        if self.card_hash_key is not None and self.card_hash_key.get_secret_value():
            return self.card_hash_key.get_secret_value().encode()
        if self.is_production:
            raise SettingsError("RISK_CARD_HASH_KEY must be set when RISK_ENV=production")
        return DEV_CARD_HASH_KEY.encode()

    def api_key_list(self) -> tuple[str, ...]:
        return tuple(k.strip() for k in self.api_keys.get_secret_value().split(",") if k.strip())

    def tracking_uri(self) -> str:
        """MLflow's URI; the default SQLite store's folder is created on first use."""
        if self.mlflow_tracking_uri.startswith(f"sqlite:///{self.data_dir}"):
            (self.data_dir / "mlflow").mkdir(parents=True, exist_ok=True)
        return self.mlflow_tracking_uri


def variable(name: str) -> str:
    """The environment variable of a field."""
    alias = Settings.model_fields[name].validation_alias
    return alias.choices[0] if isinstance(alias, AliasChoices) else f"RISK_{name.upper()}"


_loaded: tuple[tuple, Settings] | None = None  # (the environment read, its settings)


def load() -> Settings:
    """The settings in force now. A bad value raises SettingsError naming variable and value
    (secrets excepted: their value is never repeated). Read again only when the environment
    (or the working folder, which a relative data folder follows) changed: reading and
    validating every variable takes milliseconds, and settings are frozen."""
    global _loaded
    read = (os.getcwd(), tuple(os.environ.items()))
    if _loaded is not None and _loaded[0] == read:
        return _loaded[1]
    try:
        loaded = Settings()
    except ValidationError as exc:
        raise _bad(exc) from None
    _loaded = (read, loaded)
    return loaded


_CLOCK = TypeAdapter(datetime | None)


def now() -> datetime:
    """``load().now()`` reading only ``RISK_CLOCK``: the online store asks the time on serving's
    event loop (each store's pointer refresh), and ``load()`` first compares the whole
    environment with the one it last read."""
    try:
        clock = _CLOCK.validate_python(os.environ.get(variable("clock")) or None)
    except ValidationError as exc:
        raise _bad(exc, "clock") from None
    return _clock_or_now(clock)


def _clock_or_now(clock: datetime | None) -> datetime:
    """The clock in UTC (one without a time zone is UTC, as documented: not the machine's
    local time), else the real time."""
    if clock is None:
        return datetime.now(UTC)
    return clock.replace(tzinfo=UTC) if clock.tzinfo is None else clock.astimezone(UTC)


def _bad(exc: ValidationError, field: str | None = None) -> SettingsError:
    """The error naming each bad variable and its value (never a secret's value)."""
    problems = []
    for error in exc.errors():
        name = field or (str(error["loc"][0]) if error["loc"] else "?")
        where = variable(name) if name in Settings.model_fields else name
        shown = "***" if "key" in name else repr(error.get("input"))
        problems.append(f"{where}={shown}: {error['msg']}")
    return SettingsError("bad configuration: " + "; ".join(problems))


def markdown_table() -> str:
    """The README's configuration table, one row a variable."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        extra = field.json_schema_extra or {}
        default = field.default
        if isinstance(default, SecretStr):
            default = default.get_secret_value()
        if isinstance(default, bool):
            default = int(default)
        shown = extra.get("shown", "empty" if default in (None, "") else default)
        rows.append(f"| `{variable(name)}` | `{shown}` | {field.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.stdout.write(markdown_table() + "\n")
