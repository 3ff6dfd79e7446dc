"""Train a target's two LightGBM models, judge them on the test weeks, log them to MLflow,
register them as the challenger and let the gate decide whether it becomes the champion."""

import json
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assets.training.metrics import calibration_bins, evaluate, margins
from assets.training.sampling import NegativeSampling
from riskcore import settings
from riskcore.costs import CostModel, choose_thresholds, outcome, trade_off
from riskcore.feature_set import FeatureSet
from riskcore.model_bundle import ModelBundle, ScoringModel
from riskcore.model_spec import BEHAVIOURAL, KINDS, TRANSACTION_ONLY, ModelSpec
from riskcore.psi import Reference
from riskcore.registry import CHAMPION, ModelRegistry
from riskcore.targets import BUILT_IN
from riskcore.transaction_features import REQUEST_FEATURES

PARAMS = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 40,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.9,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "seed": 7,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 2,
    "verbose": -1,
}
MAX_ROUNDS, EARLY_STOPPING = 1000, 50


@dataclass
class TrainedModel:
    model: ScoringModel
    metrics: dict[str, float]
    importance: dict[str, float]  # total gain per feature
    test_scores: np.ndarray
    test_labels: np.ndarray
    reference: dict  # PSI references of every feature and of the score
    splits: dict[str, str]  # first and last purchase time of each split (split_bounds)
    on_known_customers: dict[str, float] | None = None  # transaction-only, behavioural's rows
    # The training weeks' rows before and after negative sampling, and how it was drawn
    # (assets/training/sampling.py)
    train_rows: dict[str, int] = field(default_factory=dict)
    sampling: dict[str, float | int] = field(default_factory=dict)
    test_matrix: np.ndarray | None = field(default=None, repr=False)  # for SHAP values


def rows(table: pa.Table, spec: ModelSpec, split: str) -> pa.Table:
    """The spec's rows of a split: the behavioural model learns only from customers the
    snapshot knew (as serving will use it); the transaction-only and request-only models from
    all."""
    mask = pc.equal(table[f"{spec.target}_split"], split)
    if spec.kind == BEHAVIOURAL:
        mask = pc.and_(mask, table["customer_known"])
    return table.filter(pc.fill_null(mask, False))


def split_bounds(parts: dict[str, pa.Table]) -> dict[str, str]:
    """The first and last purchase time of each split (MLflow run tags ``split.<split>.first``
    and ``.last``): what the gate needs to judge two models on weeks that lie after both of
    their training and validation data."""
    out = {}
    for split, part in parts.items():
        first, last = (t.as_py().isoformat() for t in pc.min_max(part["event_ts"]).values())
        out |= {f"split.{split}.first": first, f"split.{split}.last": last}
    return out


def matrix(table: pa.Table, spec: ModelSpec) -> np.ndarray:
    return np.column_stack(
        [
            table[name].to_numpy(zero_copy_only=False).astype(np.float64)
            for name in spec.feature_names
        ]
    )


def labels(table: pa.Table, spec: ModelSpec) -> np.ndarray:
    return table[f"{spec.target}_label"].to_numpy(zero_copy_only=False).astype(int)


def weights(table: pa.Table) -> np.ndarray | None:
    """Each purchase's weight (a held-out would-be decline stands for 1 / the share held out,
    with RISK_CENSOR_DECLINES); None when every weight is 1 (or the set predates them)."""
    if "sample_weight" not in table.column_names:
        return None
    w = table["sample_weight"].to_numpy(zero_copy_only=False).astype(np.float64)
    return None if (w == 1.0).all() else w


def train_model(
    table: pa.Table,
    spec: ModelSpec,
    params: dict | None = None,
    sampling: NegativeSampling | None = None,
) -> TrainedModel:
    """``sampling``: of the training weeks' negatives (default: RISK_NEGATIVE_SHARE); the
    validation and test weeks are never sampled."""
    parts = {split: rows(table, spec, split) for split in ("train", "valid", "test")}
    for split, part in parts.items():
        y = labels(part, spec)
        if len(y) == 0 or y.min() == y.max():
            raise ValueError(f"{spec.target}/{spec.kind}: the {split} weeks hold one class only")
    splits, full_train = split_bounds(parts), parts["train"]
    sampling = sampling or NegativeSampling.from_settings()
    parts["train"] = sampling.apply(full_train, f"{spec.target}_label")
    names, categorical = list(spec.feature_names), list(spec.categorical)
    train = lgb.Dataset(
        matrix(parts["train"], spec),
        labels(parts["train"], spec),
        weight=weights(parts["train"]),
        feature_name=names,
        categorical_feature=categorical,
        free_raw_data=False,
    )
    valid = lgb.Dataset(
        matrix(parts["valid"], spec),
        labels(parts["valid"], spec),
        weight=weights(parts["valid"]),
        reference=train,
    )
    booster = lgb.train(
        {**PARAMS, **(params or {})},
        train,
        MAX_ROUNDS,
        valid_sets=[valid],
        callbacks=[lgb.early_stopping(EARLY_STOPPING, verbose=False)],
    )
    model = ScoringModel(spec, booster)
    # Drift's reference is the full training weeks: what serving will see, unsampled.
    x_train, x_test = matrix(full_train, spec), matrix(parts["test"], spec)
    y_test = labels(parts["test"], spec)
    scores = booster.predict(x_test, num_iteration=booster.best_iteration)
    gains = booster.feature_importance("gain", iteration=booster.best_iteration)
    reference = reference_histograms(names, x_train, booster.predict(x_train))
    reference["test_score"] = reference_histograms([], x_test[:, :0], scores)["score"]
    return TrainedModel(
        model=model,
        metrics=evaluate(y_test, scores),
        importance=dict(zip(names, map(float, gains), strict=True)),
        test_scores=scores,
        test_labels=y_test,
        reference=reference,
        splits=splits,
        test_matrix=x_test,
        train_rows={"full": full_train.num_rows, "sampled": parts["train"].num_rows},
        sampling=sampling.params(),
    )


def reference_histograms(names: list[str], x: np.ndarray, scores: np.ndarray) -> dict:
    """The reference drift monitoring compares against, binned as ``assets/monitoring/psi.py``
    bins (reference deciles, a null bin): every feature and the score on the training rows
    (live scores are compared with ``test_score``, the test weeks' scores)."""
    return {
        "features": {name: Reference.of(x[:, i]).to_dict() for i, name in enumerate(names)},
        "score": Reference.of(scores).to_dict(),
    }


def train_bundle(
    table: pa.Table,
    target: str,
    feature_set: FeatureSet,
    vocabularies: dict,
    lag_hours: float,
    entities: dict[str, FeatureSet] | None = None,
) -> tuple[ModelBundle, dict[str, TrainedModel]]:
    """A model per tier (``riskcore/model_spec.py``). Without ``entities`` (a training set
    built before them) there is no request-only tier: the transaction-only model reads no
    store, as bundles did before."""
    entities = entities or {}
    kinds = KINDS if entities else (BEHAVIOURAL, TRANSACTION_ONLY)
    trained = {
        kind: train_model(
            table, ModelSpec.build(target, kind, feature_set, vocabularies, lag_hours, entities)
        )
        for kind in kinds
    }
    # Like with like: the transaction-only model on the behavioural model's test rows.
    known = rows(table, trained[BEHAVIOURAL].model.spec, "test")
    fallback = trained[TRANSACTION_ONLY].model
    trained[TRANSACTION_ONLY].on_known_customers = evaluate(
        labels(known, fallback.spec), fallback.predict(matrix(known, fallback.spec))
    )
    models = {k: t.model for k, t in trained.items()}
    thresholds = cost_thresholds(table, target, models)
    return ModelBundle(target, models, feature_set, thresholds, dict(entities)), trained


def cost_thresholds(table: pa.Table, target: str, models: dict[str, ScoringModel]) -> dict:
    """Per model of the bundle, the review and decline thresholds of least expected cost on
    the validation weeks, sending at most RISK_MAX_REVIEW_RATE to review (``riskcore/costs.py``),
    each on the rows that model learned from and scores (the behavioural model: customers a
    snapshot knew; the transaction-only model: every purchase, as during an outage); and what
    they do on the test weeks next to the built-in constants on the same purchases: approval
    rate, bad rate among approved, expected cost. Saved with the bundle; serving decides with
    the thresholds of the model that scored."""
    env = settings.load()
    costs = CostModel.from_settings(target, env)
    out: dict = {"costs": costs.as_dict(), "max_review_rate": env.max_review_rate}
    for kind, model in models.items():
        valid, test = (_scored(table, model, split) for split in ("valid", "test"))
        chosen = choose_thresholds(*valid.columns, costs, env.max_review_rate, valid.weight)
        first, last = (t.as_py() for t in pc.min_max(valid.rows["event_ts"]).values())
        out[kind] = {
            "review": chosen.review,
            "decline": chosen.decline,
            "chosen_on": f"validation weeks {first:%Y-%m-%d}..{last:%Y-%m-%d}, "
            f"{valid.rows.num_rows:,} purchases ({int(valid.bad.sum())} bad)",
            "valid": chosen.as_dict(),
            "test": test.outcome(costs, chosen.review, chosen.decline).as_dict(),
            "test_built_in": test.outcome(costs, *BUILT_IN[target]).as_dict(),
            "curve": [
                o.as_dict()
                for o in trade_off(*valid.columns, costs, env.max_review_rate, weight=valid.weight)
            ],
        }
    return out


@dataclass(frozen=True)
class ScoredRows:
    """A model's rows of a split, scored: what the cost of thresholds is computed on."""

    scores: np.ndarray
    bad: np.ndarray
    amount: np.ndarray
    weight: np.ndarray | None  # held-out declines weighted, with RISK_CENSOR_DECLINES
    rows: pa.Table

    @property
    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.scores, self.bad, self.amount

    def outcome(self, costs: CostModel, review: float, decline: float):
        return outcome(*self.columns, costs, review, decline, self.weight)


def _scored(table: pa.Table, model: ScoringModel, split: str) -> ScoredRows:
    part = rows(table, model.spec, split)
    amounts = part["amount"].to_numpy(zero_copy_only=False).astype(np.float64)
    scores = model.predict(matrix(part, model.spec))
    return ScoredRows(scores, labels(part, model.spec), amounts, weights(part), part)


# -- MLflow ----------------------------------------------------------------------------------


def code_version() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=settings.PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _plots(trained: dict[str, TrainedModel], folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    fig, (roc, pr) = plt.subplots(1, 2, figsize=(11, 4.5))
    for kind, t in trained.items():
        fpr, tpr, _ = roc_curve(t.test_labels, t.test_scores)
        roc.plot(fpr, tpr, label=f"{kind} (AUC {t.metrics['roc_auc']:.3f})")
        precision, recall, _ = precision_recall_curve(t.test_labels, t.test_scores)
        pr.plot(recall, precision, label=f"{kind} (AP {t.metrics['pr_auc']:.3f})")
    roc.plot([0, 1], [0, 1], "k:", lw=0.8)
    roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, test weeks")
    pr.set(xlabel="recall", ylabel="precision", title="precision-recall, test weeks")
    roc.legend(), pr.legend()
    fig.tight_layout()
    fig.savefig(folder / "roc_pr.png", dpi=110)
    for kind, t in trained.items():
        top = sorted(t.importance.items(), key=lambda kv: kv[1])[-20:]
        fig, ax = plt.subplots(figsize=(7, 6))
        ax.barh([k for k, _ in top], [v for _, v in top])
        ax.set(title=f"{kind}: gain, top 20", xlabel="total gain")
        fig.tight_layout()
        fig.savefig(folder / f"importance_{kind}.png", dpi=110)
    plt.close("all")
    behavioural = trained.get(BEHAVIOURAL)
    if behavioural is not None and behavioural.test_matrix is not None:
        _shap_summary(behavioural, folder)


def threshold_metrics(chosen: dict) -> dict[str, float]:
    """Each model's chosen thresholds and, on the test weeks, what they and the built-in
    constants do."""
    out = {}
    for kind in _kinds(chosen):
        mine = chosen[kind]
        out |= {f"thresholds.{kind}.review": mine["review"]}
        out |= {f"thresholds.{kind}.decline": mine["decline"]}
        for name, key in (("chosen", "test"), ("built_in", "test_built_in")):
            for metric in ("approval_rate", "review_rate", "bad_rate_approved", "expected_cost"):
                if mine[key][metric] is not None:
                    out[f"cost.test.{kind}.{name}.{metric}"] = mine[key][metric]
    return out


def thresholds_table(chosen: dict) -> str:
    """Each model's thresholds chosen by cost against the built-in constants, on the same
    test weeks."""
    lines = [
        "| model | thresholds | review | decline | approval rate | review rate | "
        "bad rate among approved | expected cost / purchase |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind in _kinds(chosen):
        for name, key in (("chosen by cost", "test"), ("built-in", "test_built_in")):
            r = chosen[kind][key]
            bad = "-" if r["bad_rate_approved"] is None else f"{r['bad_rate_approved']:.3%}"
            lines.append(
                f"| {kind} | {name} | {r['review']:.3f} | {r['decline']:.3f} | "
                f"{r['approval_rate']:.2%} | {r['review_rate']:.2%} | {bad} | "
                f"{r['expected_cost']:.3f} |"
            )
    chosen_on = chosen["behavioural"]["chosen_on"]
    return f"Chosen on the {chosen_on}; judged on the test weeks.\n\n" + "\n".join(lines)


def _kinds(chosen: dict) -> list[str]:
    """The tiers a bundle's thresholds were chosen for (two in bundles before request-only)."""
    return [kind for kind in KINDS if kind in chosen]


def _cost_curve(chosen: dict, target: str, folder: Path) -> None:
    """Per model, expected cost and approval rate against the share declined on the
    validation weeks, the chosen point marked: the trade-off a risk team reads."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = _kinds(chosen)
    fig, axes = plt.subplots(1, len(kinds), figsize=(6.5 * len(kinds), 4.5))
    for ax, kind in zip(axes, kinds, strict=True):
        curve = [p for p in chosen[kind]["curve"] if p["decline_rate"] > 0]
        x = [p["decline_rate"] for p in curve]
        ax.plot(x, [p["expected_cost"] for p in curve], "C0.-", label="expected cost / purchase")
        picked = chosen[kind]["valid"]["decline_rate"]
        if picked > 0:
            ax.axvline(picked, color="C3", ls="--", label="chosen thresholds")
        else:
            ax.set_title("the chosen thresholds decline none of these purchases", fontsize=8)
        ax.set_xscale("log")
        ax.set(xlabel="share of purchases declined (review at the chosen threshold)")
        ax.set(ylabel="expected cost per purchase")
        approval = ax.twinx()
        approval.plot(x, [p["approval_rate"] for p in curve], "C2.-", label="approval rate")
        approval.set_ylabel("approval rate")
        ax.set_title(f"{target} {kind}: cost trade-off, validation weeks", loc="left")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "cost_tradeoff.png", dpi=110)
    plt.close(fig)


def shap_sample(t: TrainedModel, good: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """(SHAP values, feature values) on the test rows: every bad one and a seeded sample of
    the good ones. LightGBM's ``pred_contrib`` gives exact tree SHAP values in log-odds, the
    last column the expected value."""
    rng = np.random.default_rng(7)
    bad, rest = np.flatnonzero(t.test_labels == 1), np.flatnonzero(t.test_labels == 0)
    rows = np.sort(np.concatenate([bad, rng.choice(rest, min(good, len(rest)), replace=False)]))
    x = t.test_matrix[rows]
    booster = t.model.booster
    contrib = booster.predict(x, num_iteration=booster.best_iteration, pred_contrib=True)
    return contrib[:, :-1], x


def _shap_summary(t: TrainedModel, folder: Path, top: int = 20) -> None:
    """Which features carry the behavioural model's scores: mean |SHAP| per feature (JSON)
    and a summary plot of the top ones (each dot a test row, coloured by the feature's value
    rank: red high, blue low)."""
    import matplotlib.pyplot as plt

    spec = t.model.spec
    values, x = shap_sample(t)
    names = list(spec.feature_names)
    mean_abs = np.abs(values).mean(axis=0)
    (folder / "shap_behavioural.json").write_text(
        json.dumps(dict(zip(names, map(float, mean_abs), strict=True)), indent=1)
    )
    order = np.argsort(mean_abs)[-top:]
    kind = (  # what reads each feature: only "transaction" is the transaction-only model's
        dict.fromkeys(spec.transaction_features, "vs snapshot")
        | dict.fromkeys(REQUEST_FEATURES, "transaction")
        | dict.fromkeys(spec.snapshot_features, "snapshot")
        | dict.fromkeys(spec.realtime_features, "real-time")
        | {n: n.split("_")[0] for n in spec.entity_features}
    )
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(order) + 1.5))
    jitter = np.random.default_rng(7).uniform(-0.3, 0.3, len(x))
    for row, i in enumerate(order):
        column = x[:, i]
        known = ~np.isnan(column)
        rank = np.full(len(column), 0.5)
        rank[known] = np.argsort(np.argsort(column[known])) / max(known.sum() - 1, 1)
        ax.scatter(values[:, i], row + jitter, c=rank, cmap="coolwarm", s=4, alpha=0.6)
    ax.set_yticks(range(len(order)), [f"{names[i]} ({kind[names[i]]})" for i in order])
    ax.axvline(0, color="k", lw=0.6)
    ax.set(
        title=f"{spec.target} behavioural model: SHAP values, top {len(order)} features",
        xlabel="SHAP value (log-odds; red = high feature value, blue = low, grey-ish = missing)",
    )
    fig.tight_layout()
    fig.savefig(folder / "shap_behavioural.png", dpi=110)
    plt.close(fig)


def log_and_register(
    bundle: ModelBundle,
    trained: dict[str, TrainedModel],
    *,
    training_hash: str,
    model_name: str,
    tracking_uri: str,
    artifact_root: str,
    snapshot_reference: dict | None = None,
    run_name: str | None = None,
) -> tuple[str, str]:
    """One MLflow run per target: parameters, metrics, specs, references, plots; the bundle
    registered as a new version of ``model_name`` with alias ``challenger``. Returns
    (version, run id)."""
    import mlflow

    from riskcore.mlflow_model import RiskModel

    mlflow.set_tracking_uri(tracking_uri)
    experiment = f"risk-{bundle.target}"
    if mlflow.get_experiment_by_name(experiment) is None:
        mlflow.create_experiment(experiment, artifact_location=f"{artifact_root}/{experiment}")
    mlflow.set_experiment(experiment)
    spec = bundle.behavioural.spec
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(run_name=run_name) as run:
        folder = Path(tmp)
        mlflow.log_params(
            {
                **PARAMS,
                "max_rounds": MAX_ROUNDS,
                "early_stopping": EARLY_STOPPING,
                "availability_lag_hours": spec.availability_lag_hours,
                **trained[BEHAVIOURAL].sampling,
            }
        )
        mlflow.set_tags(
            {
                "training_set_hash": training_hash,
                "code_version": code_version(),
                "feature_set_version": spec.feature_set_version,
                "target": bundle.target,
                **trained[BEHAVIOURAL].splits,  # the weeks the gate judges by
            }
        )
        for kind, t in trained.items():
            mlflow.log_metrics({f"{kind}.{k}": v for k, v in t.metrics.items()})
            mlflow.log_metric(f"{kind}.best_iteration", t.model.booster.best_iteration)
            mlflow.log_metrics({f"{kind}.train_rows.{k}": n for k, n in t.train_rows.items()})
            if t.on_known_customers:
                mlflow.log_metrics(
                    {f"{kind}.known_customers.{k}": v for k, v in t.on_known_customers.items()}
                )
            (folder / f"reference_{kind}.json").write_text(json.dumps(t.reference))
            (folder / f"calibration_{kind}.json").write_text(
                json.dumps(calibration_bins(t.test_labels, t.test_scores))
            )
            (folder / f"importance_{kind}.json").write_text(json.dumps(t.importance, indent=1))
        # What the behavioural features add, on the same test rows (known customers').
        fallback = trained.get(TRANSACTION_ONLY)
        if BEHAVIOURAL in trained and fallback is not None and fallback.on_known_customers:
            gained = margins(trained[BEHAVIOURAL].metrics, fallback.on_known_customers)
            mlflow.log_metrics({f"margin.{k}": v for k, v in gained.items()})
        if snapshot_reference is not None:  # the snapshot it learned from, for drift
            (folder / "reference_snapshot.json").write_text(json.dumps(snapshot_reference))
        _plots(trained, folder)
        if bundle.thresholds is not None:
            mlflow.log_metrics(threshold_metrics(bundle.thresholds))
            _cost_curve(bundle.thresholds, bundle.target, folder)
        mlflow.log_artifacts(str(folder), "evaluation")
        bundle_dir = bundle.save(folder / "bundle")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=RiskModel(),
            artifacts={"bundle": str(bundle_dir)},
            pip_requirements=["lightgbm==4.7.0", "numpy", "pandas"],
        )
        version = str(mlflow.register_model(info.model_uri, model_name).version)
    ModelRegistry(tracking_uri).mark_challenger(model_name, version)
    return version, run.info.run_id


@dataclass
class GateDecision:
    promoted: bool
    reason: str
    challenger_auc: float
    champion_auc: float | None
    replaces: str | None = None  # the champion a promoted challenger replaces
    judged_on: str = ""  # the test purchases both models were judged on
    canary: bool = False  # passed, and acting on a share of customers as the canary


def gate(
    model_name: str,
    version: str,
    challenger: TrainedModel,
    table: pa.Table,
    *,
    tracking_uri: str,
    tolerance: float = 0.005,
    checks_passed: bool = True,
    canary_share: float | None = None,
) -> GateDecision:
    """Pass the challenger when the training set passed its checks and its behavioural test
    AUC is not worse than the champion's on the same test rows (within ``tolerance``). The
    first model becomes champion directly; a later one becomes the canary, acting on
    ``canary_share`` of customers (default RISK_CANARY_SHARE; 0: champion at once). The
    decision is recorded on the version (tag and description), passed or not."""
    registry = ModelRegistry(tracking_uri)
    decision = _judge(registry, model_name, challenger, table, tolerance, checks_passed)
    share = settings.load().canary_share if canary_share is None else canary_share
    if decision.promoted and decision.replaces is not None and share > 0:
        # A champion serves: the challenger first acts on a share of customers, and the
        # canary sensor promotes it to full or halts it (docs/architecture.md#rollout).
        since = settings.now().isoformat()
        registry.start_canary(model_name, version, share, since, decision.reason)
        decision.promoted, decision.canary = False, True
    elif decision.promoted:
        registry.promote(model_name, version, decision.reason, replaces=decision.replaces)
    else:
        registry.record_decision(model_name, version, f"stays challenger: {decision.reason}")
    return decision


def _judge(
    registry: ModelRegistry,
    model_name: str,
    challenger: TrainedModel,
    table: pa.Table,
    tolerance: float,
    checks_passed: bool,
) -> GateDecision:
    auc = challenger.metrics["roc_auc"]
    if not checks_passed:
        return GateDecision(False, "the training set failed its checks", auc, None)
    champion = registry.version(model_name, CHAMPION)
    if champion is None:
        return GateDecision(True, "first model: champion directly", auc, None)
    v = champion.version
    incumbent = registry.load_bundle(model_name, str(v)).behavioural
    spec = challenger.model.spec
    if not set(incumbent.spec.feature_names) <= set(table.column_names):
        return GateDecision(
            False,
            f"champion v{v} reads features this training set lacks: promote by hand after review",
            auc,
            None,
        )
    # Fair weeks only: test purchases after both models' training and validation data.
    seen = registry.run_tags(champion.run_id).get("split.valid.last")
    if seen is None:
        return GateDecision(
            False,
            f"cannot judge: champion v{v} has no recorded training weeks; promote by hand",
            auc,
            None,
        )
    after = max(
        datetime.fromisoformat(seen), datetime.fromisoformat(challenger.splits["split.valid.last"])
    )
    test = rows(table, spec, "test")
    test = test.filter(
        pc.greater(test["event_ts"], pa.scalar(after, test.schema.field("event_ts").type))
    )
    y = labels(test, spec)
    if len(y) == 0 or y.min() == y.max():
        return GateDecision(
            False,
            f"cannot judge: {len(y)} test purchases after v{v}'s validation weeks (to "
            f"{after:%Y-%m-%d}), not both classes: the champion stays",
            auc,
            None,
        )
    first, last = (t.as_py() for t in pc.min_max(test["event_ts"]).values())
    weeks = f"{first:%Y-%m-%d}..{last:%Y-%m-%d}, {len(y):,} purchases ({int(y.sum())} bad)"
    auc = evaluate(y, challenger.model.predict(matrix(test, spec)))["roc_auc"]
    champion_auc = evaluate(y, incumbent.predict(matrix(test, incumbent.spec)))["roc_auc"]
    if auc >= champion_auc - tolerance:
        reason = (
            f"test AUC {auc:.4f} >= champion v{v}'s {champion_auc:.4f} - {tolerance} on the "
            f"same purchases {weeks}, after both models' validation weeks"
        )
        return GateDecision(True, reason, auc, champion_auc, replaces=str(v), judged_on=weeks)
    reason = (
        f"test AUC {auc:.4f} < champion v{v}'s {champion_auc:.4f} - {tolerance} on the same "
        f"purchases {weeks}, after both models' validation weeks: stays challenger"
    )
    return GateDecision(False, reason, auc, champion_auc, judged_on=weeks)
