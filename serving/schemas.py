"""The API's request and response schemas (pydantic): what OpenAPI documents and what every
request body is validated against. A transaction carries the raw schema's fields."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Literal

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    RootModel,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from riskcore.codec import shown_name
from riskcore.ids import CONTROL, CONTROL_REFUSED, is_id
from riskcore.ids import REFUSED as ID_REFUSED
from riskcore.pan import find_pan
from riskcore.transaction_features import CHANNELS


def _an_id(value: str) -> str:
    if not is_id(value):
        raise ValueError(ID_REFUSED)
    return value


def _a_device(value: str | None) -> str | None:
    """A device id as ingest stores it (``nullif(trim(device_id), '')``): spaces around it go,
    blank is no device; a control character is refused. Otherwise a blank id would be scored
    as a device never seen, which training never saw."""
    if value is not None and CONTROL.search(value):
        raise ValueError(CONTROL_REFUSED)
    return (value or "").strip(" ") or None


Text = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_an_id)]
Decision = Literal["approve", "review", "decline"]
FeatureSource = Literal[
    "online",  # the customer's record in the online store: behavioural model
    "request",  # snapshot values given in the request (``features``): behavioural model
    "fallback_new_customer",  # not in the serving snapshot: transaction-only model
    "fallback_event_before_snapshot",  # event_ts before the snapshot's as_of: transaction-only
    "fallback_store_unavailable",  # store down, slow, empty or expired: request-only model
    "fallback_overload",  # waited past the queue budget (overload): request-only, no lookup
]
# Why a device, merchant or card has features or not (missing: NaN, as in training)
EntitySource = Literal[
    "online",  # its record in the online store
    "unknown",  # not in its serving snapshot (new, or no purchase in 90 days)
    "no_key",  # the request does not name it (e.g. no card_hash)
    "unavailable",  # store down, slow, empty, expired or overloaded
    "event_before_snapshot",  # event_ts before its snapshot's as_of: not read
]


EXAMPLE = {
    "transaction_id": "t-1001",
    "customer_id": "c-42",
    "event_ts": "2026-04-30T12:34:56Z",
    "amount": "129.90",
    "currency": "EUR",
    "merchant_id": "m-7",
    "merchant_category": "electronics",
    "channel": "online",
    "device_id": "d-9",
    "country": "DE",
    "installments": 3,
}


# Card numbers are refused at the door (riskcore/pan.py finds them), in every text of a body:
# a field, an extra field the schema ignores, a what-if feature's name or value. The error
# names the field, never the value, nor a key that is the caller's own text.
#
# Refused rather than masked: a masked id is another id (idempotency by transaction_id, the
# customer's record and the response's transaction_id would all change silently), a masked
# what-if feature scores something the caller did not ask for, and a producer whose card
# numbers were quietly masked would never learn that it is sending them. A 422 stops the leak
# at its source, and nothing of a refused request is stored or logged.
_REFUSED = "holds a card number; card numbers are refused"
_FLOAT32 = float(np.finfo(np.float32).max)


def _texts(*values: object) -> list[str]:
    """Every text in JSON-like values (dict keys too), numbers as their digits (a card number
    sent as a JSON number is still one)."""
    out = []
    for value in values:
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, int | float | Decimal) and not isinstance(value, bool):
            out.append(_digits_of(value))
        elif isinstance(value, dict):
            out += _texts(*value.keys(), *value.values())
        elif isinstance(value, list | tuple):
            out += _texts(*value)
    return out


def _digits_of(number: int | float | Decimal) -> str:
    """A number as it was written: its 16 digits, not 4.1...e+15 (a float's repr)."""
    if isinstance(number, float) and number.is_integer() and abs(number) < 1e20:
        return str(int(number))
    return str(number)


def _no_card_number(value: str | None) -> str | None:
    if value is not None and find_pan(value):
        raise ValueError(_REFUSED)
    return value


class _Scanned(BaseModel):
    """A body whose fields the schema ignores are accepted, scanned for card numbers, then
    dropped (never stored)."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="after")
    def _no_card_number_in_extras(self) -> _Scanned:
        """Kept until scanned here rather than ignored by the schema: a "before" validator
        would have pydantic build the whole body as Python objects first, for every request."""
        extras = self.__pydantic_extra__
        if extras:
            if any(find_pan(t) for key, value in extras.items() for t in _texts(key, value)):
                raise ValueError(f"a field the schema ignores {_REFUSED}")
            extras.clear()
        return self


class EventRequest(_Scanned):
    """A purchase that happened, for the real-time state (``POST /events``, the event stream).
    Further transaction fields are accepted and ignored, so a producer can send the whole
    transaction; none of them is stored."""

    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE]})

    transaction_id: Text
    customer_id: Text
    event_ts: datetime | None = Field(
        None,
        validate_default=True,
        description="UTC (an offset is converted, a naive time is taken as UTC); default: "
        "now. Rejected when later than now + the allowed clock skew, or before 2000.",
    )
    # Below 10^10: at most 12 digits with the cents, so an amount can never hold a card number
    # (13-19 digits), and a realistic purchase in any currency fits.
    amount: Annotated[Decimal, Field(gt=0, lt=10**10, max_digits=12, decimal_places=2)] = Field(
        description="In the settlement currency, > 0 and < 10,000,000,000, at most 2 decimals."
    )
    merchant_id: Text | None = None
    device_id: Annotated[str, Field(max_length=256), AfterValidator(_a_device)] | None = None

    _card_numbers = field_validator(
        "transaction_id", "customer_id", "merchant_id", "device_id", mode="after"
    )(_no_card_number)

    @field_validator("event_ts", mode="after")
    @classmethod
    def _not_in_the_future(cls, at: datetime | None, info: ValidationInfo) -> datetime:
        now = datetime.now(UTC)
        if at is None:
            return now
        return _in_bounds(at, info)


class EventBatch(_Scanned):
    events: list[EventRequest] = Field(min_length=1, max_length=10_000)


def _event_form(body: object) -> str:
    """Which form a ``POST /events`` body takes: a list has its ``events`` key."""
    return "batch" if isinstance(body, dict) and "events" in body else "one"


class Events(
    RootModel[
        Annotated[
            Annotated[EventBatch, Tag("batch")] | Annotated[EventRequest, Tag("one")],
            Discriminator(_event_form),
        ]
    ]
):
    """The body of ``POST /events``: one event, or ``{"events": [...]}``. The form is chosen by
    the ``events`` key, so an error names the fields of that form only (``["body", "one",
    "event_ts"]``), not the other form's too."""

    @property
    def events(self) -> list[EventRequest]:
        return self.root.events if isinstance(self.root, EventBatch) else [self.root]


class EventsRecorded(BaseModel):
    recorded: int = Field(description="Events added to the real-time state.")
    duplicates: int = Field(description="Events whose transaction_id was already recorded.")
    late: int = Field(description="Events too old to enter any window (see serving/realtime.py).")


class ScoreRequest(EventRequest):
    """One transaction as the payment flow sees it (the raw schema's fields)."""

    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "EUR"
    merchant_category: Annotated[str, Field(min_length=1, max_length=64)]
    channel: Literal[CHANNELS]
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$", description="ISO 3166 alpha-2")]
    installments: Annotated[int, Field(ge=1, le=60)] = Field(
        1, description="1 = paid in full; > 1 = a BNPL plan (default risk is scored)."
    )
    card_hash: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = Field(
        None, description="Keyed hash of the card (64 hex). Never a card number."
    )
    features: dict[str, float | str | list[str] | None] | None = Field(
        None,
        max_length=256,
        description="Score with these snapshot values instead of a lookup: feature name -> "
        "value (absent = null), plus the context columns (home_country, known_devices).",
    )
    features_as_of: datetime | None = Field(
        None, description="With ``features``: their snapshot time (default: event_ts)."
    )
    explain: bool = Field(False, description="Return reason codes even for an approval.")

    _card_number_category = field_validator("merchant_category", mode="after")(_no_card_number)

    @field_validator("features", mode="after")
    @classmethod
    def _no_card_number_in_features(cls, features: dict | None) -> dict | None:
        for name, value in (features or {}).items():
            if any(find_pan(t) for t in _texts(name, value)):
                raise ValueError(f"a feature's name or value {_REFUSED}")
        for name, value in (features or {}).items():
            # float32 is what the models read: a larger value would become infinity
            if isinstance(value, float) and not (math.isfinite(value) and abs(value) < _FLOAT32):
                raise ValueError(f"{shown_name(name)}: not a finite float32 number")
        return features

    @field_validator("features_as_of", mode="after")
    @classmethod
    def _as_utc(cls, at: datetime | None, info: ValidationInfo) -> datetime | None:
        # It dates given features: alone it would be ignored while the caller believed the
        # lookup was made as of that time. (Invalid features are absent here: not this error.)
        if at is not None and info.data.get("features", ...) is None:
            raise ValueError("given without features: it is the time of given features")
        return at and _in_bounds(at, info)

    @model_validator(mode="after")
    def _snapshot_before_the_purchase(self) -> ScoreRequest:
        if self.features_as_of is not None and self.features_as_of > self.event_ts:
            raise ValueError("features_as_of is after event_ts: features cannot see the future")
        return self


class BatchRequest(_Scanned):
    transactions: list[ScoreRequest] = Field(min_length=1)

    @model_validator(mode="after")
    def _size(self, info: ValidationInfo) -> BatchRequest:
        limit = (info.context or {}).get("max_batch", 500)
        if len(self.transactions) > limit:
            raise ValueError(f"{len(self.transactions)} transactions; at most {limit} a batch")
        return self


class Reason(BaseModel):
    code: str = Field(description="The feature's name in capitals, e.g. UNKNOWN_DEVICE.")
    target: str
    feature: str
    value: float | str | None
    contribution: float = Field(description="Its share of the score, in log-odds (SHAP).")
    description: str


class Timing(BaseModel):
    lookup_ms: float
    features_ms: float
    inference_ms: float
    total_ms: float


class Thresholds(BaseModel):
    review: float
    decline: float = Field(description="Above 1: this target never declines.")
    source: Literal["model", "environment", "built-in"]


class ScoreResponse(BaseModel):
    transaction_id: str
    decision: Decision
    fraud_score: float = Field(description="Probability of fraud.")
    default_score: float | None = Field(
        description="Probability of default; BNPL (installments > 1) only."
    )
    model_version: dict[str, str] = Field(
        description="Target -> the registered model/version that decided."
    )
    model_role: dict[str, Literal["champion", "canary"]] = Field(
        description="Target -> which model decided: the champion, or the canary acting on its "
        "share of customers (a customer always sees the same one)."
    )
    thresholds: dict[str, Thresholds] = Field(
        description="Target -> the review and decline thresholds that applied, and where they "
        "come from: `model` (chosen by cost with the version), `environment` (an override), "
        "`built-in` (a version logged before thresholds were chosen)."
    )
    holdout: bool = Field(
        False,
        description="The models would decline this purchase; it was approved as part of the "
        "random holdout (RISK_HOLDOUT_SHARE), so its outcome is observed.",
    )
    feature_set_version: str | None = Field(description="The snapshot feature set read.")
    features_as_of: datetime | None
    feature_source: FeatureSource
    entity_sources: dict[Literal["device", "merchant", "card"], EntitySource] | None = Field(
        None,
        description="Entity -> whether its snapshot features were read, and if not why (the "
        "fraud model's; missing features are missing values, as in training). None: the "
        "models read no entity features.",
    )
    timing_ms: Timing
    reasons: list[Reason] | None = Field(
        None, description="Top-5 contributions toward risk: reviews, declines, or explain."
    )


class BatchResponse(BaseModel):
    results: list[ScoreResponse]


class FeaturesResponse(BaseModel):
    customer_id: str
    feature_set_version: str
    as_of: datetime
    features: dict[str, float | str | None]
    context: dict[str, str | list[int] | None]


# A purchase or a snapshot before this is a broken clock or a default value, not a time.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)


def _in_bounds(at: datetime, info: ValidationInfo) -> datetime:
    """``at`` in UTC, refused before ``EARLIEST`` or later than now + the allowed skew."""
    at = _utc(at)
    if at < EARLIEST:
        raise ValueError(f"before {EARLIEST:%Y-%m-%d}")
    skew = timedelta(seconds=(info.context or {}).get("max_future_s", 300))
    if at > datetime.now(UTC) + skew:
        raise ValueError(f"in the future (allowed clock skew {skew})")
    return at


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
