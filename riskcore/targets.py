"""What is predicted and how a score becomes a decision: the two targets and their thresholds,
shared by training (the gate's precision at the decline threshold), serving (decisions) and
monitoring (realized performance)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from riskcore.settings import Settings

TARGETS = ("fraud", "default")


@dataclass(frozen=True)
class Thresholds:
    """Scores at or above ``decline`` decline, at or above ``review`` go to review; the most
    severe decision of the two targets wins (default risk only for instalment plans)."""

    fraud_review: float = 0.2
    fraud_decline: float = 0.6
    default_review: float = 0.3
    default_decline: float = 0.6

    def __post_init__(self):
        for target in TARGETS:
            review, decline = getattr(self, f"{target}_review"), getattr(self, f"{target}_decline")
            if not 0 <= review <= decline <= 1:
                raise ValueError(f"{target}: need 0 <= review {review} <= decline {decline} <= 1")

    @classmethod
    def from_settings(cls, env: Settings) -> Thresholds:
        """RISK_FRAUD_REVIEW, RISK_FRAUD_DECLINE, RISK_DEFAULT_REVIEW, RISK_DEFAULT_DECLINE."""
        return cls(**{name: getattr(env, name) for name in asdict(cls())})
