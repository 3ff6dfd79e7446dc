"""Training in the asset graph: the point-in-time training set, then the models."""

import json
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from assets.features.online import newest_as_of_date
from assets.monitoring.drift import snapshot_reference
from assets.names import REGISTRY_POOL, TRAINING
from assets.training.dataset import (
    TARGETS,
    TrainingWindow,
    build_training_set,
    content_hash,
    read_training_set,
)
from assets.training.models import gate, log_and_register, thresholds_table, train_bundle
from featurestore.registry import ENTITY_MARTS, load_entity_feature_sets, load_feature_set
from resources.lakehouse import TRAINING_SET, Lakehouse
from riskcore import settings
from riskcore.registry import model_name


class TrainingSetConfig(Config):
    """A run's overrides; an unset field takes the one configuration of riskcore/settings.py
    (RISK_FRAUD_MATURITY_DAYS ...), so the schedule, the sensors, the UI and the demo train
    alike."""

    first_day: str = ""  # default: the first daily partition
    last_day: str = ""  # default: the last day the newest snapshot covers
    cutoff: str = ""  # what is known of labels (ISO time); default: the newest as_of
    availability_lag_hours: float | None = None
    fraud_maturity_days: int | None = None
    default_maturity_days: int | None = None
    valid_weeks: int | None = None
    test_weeks: int | None = None

    def resolved(self) -> dict:
        """The settings this run trains with, as its metadata shows them."""
        env = settings.load()
        fields = {
            "availability_lag_hours": env.availability_lag_h,
            "fraud_maturity_days": env.fraud_maturity_days,
            "default_maturity_days": env.default_maturity_days,
            "valid_weeks": env.valid_weeks,
            "test_weeks": env.test_weeks,
        }
        return {
            k: default if getattr(self, k) is None else getattr(self, k)
            for k, default in fields.items()
        }

    def window(self, lakehouse: Lakehouse) -> TrainingWindow:
        resolved = self.resolved()
        newest = newest_as_of_date(lakehouse)
        if newest is None:
            raise Failure("no snapshots yet: materialize the daily features first")
        cutoff = (
            datetime.fromisoformat(self.cutoff)
            if self.cutoff
            else datetime(newest.year, newest.month, newest.day, tzinfo=UTC)
        )
        return TrainingWindow(
            first_day=date.fromisoformat(self.first_day or settings.load().first_day().isoformat()),
            last_day=date.fromisoformat(self.last_day) if self.last_day else newest - timedelta(1),
            cutoff=cutoff,
            availability_lag=timedelta(hours=resolved["availability_lag_hours"]),
            maturity_days={
                "fraud": resolved["fraud_maturity_days"],
                "default": resolved["default_maturity_days"],
            },
            valid_weeks=resolved["valid_weeks"],
            test_weeks=resolved["test_weeks"],
        )


def split_summary(table: pa.Table) -> list[dict]:
    out = []
    for target in TARGETS:
        for split in ("train", "valid", "test"):
            part = table.filter(pc.fill_null(pc.equal(table[f"{target}_split"], split), False))
            bad = pc.sum(part[f"{target}_label"]).as_py() or 0
            known = pc.sum(part["customer_known"]).as_py() or 0
            out.append(
                {
                    "target": target,
                    "split": split,
                    "rows": part.num_rows,
                    "bad": bad,
                    "known_customers": known,
                }
            )
    return out


def training_set_problems(table: pa.Table) -> list[str]:
    """What would make a model trained on this set meaningless."""
    problems = []
    for row in split_summary(table):
        where = f"{row['target']}/{row['split']}"
        if row["rows"] == 0 or row["bad"] in (0, row["rows"]):
            problems.append(f"{where}: {row['rows']} rows, {row['bad']} bad: one class only")
        elif row["known_customers"] == 0:
            problems.append(f"{where}: no customer known to a snapshot")
    return problems


@asset(
    key=["training", "training_set"],
    deps=[
        *(AssetKey(["lakehouse", f"{e}_features_daily"]) for e in ("customer", *ENTITY_MARTS)),
        AssetKey(["raw", "labels"]),
    ],
    group_name=TRAINING,
    pool=REGISTRY_POOL,
    kinds={"delta", "duckdb"},
    description="Labelled purchases with the customer's, device's, merchant's and card's "
    "snapshots serving had at their time (ASOF on availability), as serving decodes them, plus "
    "the transaction-time and real-time features; time split.",
)
def training_set(
    context: AssetExecutionContext, config: TrainingSetConfig, lakehouse: Lakehouse
) -> MaterializeResult:
    feature_set, entities = load_feature_set(), load_entity_feature_sets()
    window = config.window(lakehouse)
    table = build_training_set(lakehouse, feature_set, window, entities)
    digest = content_hash(table)
    vocabularies = table.schema.metadata[b"vocabularies"].decode()
    version = lakehouse.overwrite(
        TRAINING_SET,
        table,
        {
            "risk.content_hash": digest,
            "risk.vocabularies": vocabularies,
            "risk.feature_set_version": feature_set.version,
            "risk.entity_feature_set_versions": table.schema.metadata[
                b"entity_feature_set_versions"
            ].decode(),
            "risk.availability_lag_hours": str(window.availability_lag.total_seconds() / 3600),
        },
    )
    summary = split_summary(table)
    context.log.info(f"training set: {table.num_rows:,} purchases, hash {digest[:12]}")
    return MaterializeResult(
        metadata={
            "rows": table.num_rows,
            "content_hash": digest,
            "training_settings": MetadataValue.json(config.resolved()),
            "feature_set_version": feature_set.version,
            "window": f"{window.first_day} .. {window.last_day}, labels known by {window.cutoff}",
            "splits": MetadataValue.md(
                "| target | split | rows | bad | known customers |\n|---|---|---|---|---|\n"
                + "\n".join(
                    f"| {r['target']} | {r['split']} | {r['rows']} | {r['bad']} | "
                    f"{r['known_customers']} |"
                    for r in summary
                )
            ),
            "table_uri": MetadataValue.path(lakehouse.uri(TRAINING_SET)),
            "delta_version": version,
        }
    )


@asset_check(
    asset=training_set,
    blocking=True,
    description="Every target has both classes in its train, validation and test weeks.",
)
def training_set_is_usable(lakehouse: Lakehouse) -> AssetCheckResult:
    problems = training_set_problems(lakehouse.dataset(TRAINING_SET).to_table())
    return AssetCheckResult(
        passed=not problems, metadata={"problems": "\n".join(problems) or "none"}
    )


class ModelConfig(Config):
    promotion_tolerance: float | None = None  # default: RISK_PROMOTION_TOLERANCE


@asset(
    deps=[training_set],
    group_name=TRAINING,
    pool=REGISTRY_POOL,
    kinds={"lightgbm", "mlflow"},
    description="Per target (fraud, default): behavioural, transaction-only and request-only "
    "LightGBM models (docs/architecture.md#model-tiers), logged to MLflow, registered as "
    "challenger; the gate promotes it to champion.",
)
def risk_models(
    context: AssetExecutionContext, config: ModelConfig, lakehouse: Lakehouse
) -> MaterializeResult:
    table = read_training_set(lakehouse)
    commit = lakehouse.last_commit(TRAINING_SET)
    feature_set, entities = load_feature_set(), load_entity_feature_sets()
    built_with = {"customer": commit["risk.feature_set_version"]}
    built_with |= json.loads(commit.get("risk.entity_feature_set_versions") or "{}")
    now = {"customer": feature_set.version} | {e: fs.version for e, fs in entities.items()}
    if built_with != now:
        raise Failure(
            f"the training set is of the feature sets {built_with}, the registry now of {now}: "
            "rebuild the training set"
        )
    vocabularies = json.loads(commit["risk.vocabularies"])
    problems = training_set_problems(table)
    tracking = settings.load().tracking_uri()
    # Drift is measured against the newest snapshot the models learned from.
    newest = pc.max(table["snapshot_as_of"]).as_py()
    reference = snapshot_reference(lakehouse, feature_set, newest.date()) if newest else None
    metadata: dict = {"training_set_hash": commit["risk.content_hash"], "mlflow": tracking}
    first, last = (d.as_py() for d in pc.min_max(table["event_ts"]).values())
    for target in TARGETS:
        name = model_name(target)
        context.log.info(f"training the {target} models")
        lag_hours = float(commit["risk.availability_lag_hours"])
        bundle, trained = train_bundle(
            table, target, feature_set, vocabularies, lag_hours, entities
        )
        version, run_id = log_and_register(
            bundle,
            trained,
            training_hash=commit["risk.content_hash"],
            model_name=name,
            tracking_uri=tracking,
            artifact_root=str(settings.load().mlflow_artifacts),
            snapshot_reference=reference,
            run_name=f"{name} behavioural + transaction-only + request-only, purchases "
            f"{first:%Y-%m-%d}..{last:%Y-%m-%d}",
        )
        decision = gate(
            name,
            version,
            trained["behavioural"],
            table,
            tracking_uri=tracking,
            tolerance=(
                settings.load().promotion_tolerance
                if config.promotion_tolerance is None
                else config.promotion_tolerance
            ),
            checks_passed=not problems,
        )
        context.log.info(f"{name} v{version}: {decision.reason}")
        names = list(next(iter(trained.values())).metrics)
        metadata[f"{target}_metrics"] = MetadataValue.md(
            "| metric | "
            + " | ".join(trained)
            + " |\n|---|"
            + "---|" * len(trained)
            + "\n"
            + "\n".join(
                f"| {m} | " + " | ".join(f"{t.metrics[m]:.4f}" for t in trained.values()) + " |"
                for m in names
            )
        )
        if bundle.thresholds is not None:
            metadata[f"{target}_thresholds"] = MetadataValue.md(thresholds_table(bundle.thresholds))
        metadata |= {
            f"{target}_version": version,
            f"{target}_run_id": run_id,
            f"{target}_promoted": decision.promoted,
            f"{target}_canary": decision.canary,
            f"{target}_gate": decision.reason,
            f"{target}_judged_on": decision.judged_on or "-",
            f"{target}_auc_behavioural": trained["behavioural"].metrics["roc_auc"],
            f"{target}_auc_transaction_only": trained["transaction_only"].metrics["roc_auc"],
        }
    return MaterializeResult(metadata=metadata)
