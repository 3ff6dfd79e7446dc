"""What is predicted and how a score becomes a decision: the two targets and their thresholds,
shared by training (chosen by cost, ``riskcore/costs.py``), serving (decisions) and monitoring
(realized performance).

A model version carries, per model of its bundle, the thresholds chosen on its validation weeks;
serving decides with those of the model that scored. An environment variable
(RISK_FRAUD_REVIEW ...) overrides a value only when it is set; a model logged before thresholds
were chosen falls back to the built-in constants. Every decision says which applied
(``TargetThresholds.source``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from riskcore.settings import Settings

TARGETS = ("fraud", "default")
# The constants used before thresholds were chosen by cost (and for an older model version).
BUILT_IN = {"fraud": (0.2, 0.6), "default": (0.3, 0.6)}


@dataclass(frozen=True, slots=True)
class TargetThresholds:
    """Scores at or above ``decline`` decline, at or above ``review`` go to review; the most
    severe decision of the two targets wins (default risk only for instalment plans).
    ``decline`` above 1 never declines."""

    review: float
    decline: float
    source: str  # "model" (chosen by cost with the version) | "environment" | "built-in"

    def __post_init__(self):
        if not 0 <= self.review <= self.decline:
            raise ValueError(f"need 0 <= review {self.review} <= decline {self.decline}")

    def decide(self, score: float) -> str:
        return (
            "decline" if score >= self.decline else "review" if score >= self.review else "approve"
        )

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Thresholds:
    """The environment's overrides: a value set replaces the model's, None leaves it."""

    fraud_review: float | None = None
    fraud_decline: float | None = None
    default_review: float | None = None
    default_decline: float | None = None

    @classmethod
    def from_settings(cls, env: Settings) -> Thresholds:
        """RISK_FRAUD_REVIEW, RISK_FRAUD_DECLINE, RISK_DEFAULT_REVIEW, RISK_DEFAULT_DECLINE."""
        return cls(**{name: getattr(env, name) for name in asdict(cls())})

    def resolve(self, target: str, chosen: dict | None) -> TargetThresholds:
        """A target's thresholds for one model: the model's own (``chosen``: its ``review`` and
        ``decline`` from the bundle, None for a model logged without) under the environment's
        overrides."""
        review, decline = (chosen["review"], chosen["decline"]) if chosen else BUILT_IN[target]
        source = "model" if chosen else "built-in"
        set_review = getattr(self, f"{target}_review")
        set_decline = getattr(self, f"{target}_decline")
        if set_review is not None or set_decline is not None:
            source = "environment"
            review = review if set_review is None else set_review
            decline = decline if set_decline is None else set_decline
            # One value overridden may cross the model's other: a decline threshold set below
            # the model's review one reviews nothing (never an error on the request path).
            review = min(review, decline)
        return TargetThresholds(review, decline, source)
