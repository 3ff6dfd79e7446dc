"""Scoring: look the customers, devices, merchants and cards up, build each model's input
from its spec, predict, decide, explain, log. No HTTP here: ``serving/app.py`` and the
benchmarks call it.

A customer found in the serving snapshot is scored by the behavioural model; a customer the
snapshot does not hold by the transaction-only model (the transaction and its device's,
merchant's and card's records); every transaction while the store is down, slow, empty, expired
or overloaded by the request-only model (no invented defaults: docs/architecture.md#model-
tiers). A device, merchant or card the store does not hold gives missing values (NaN, as in
training) and its reason in ``entity_sources``, never an error. Each model reads records of its
own feature-set version only. After ``breaker_failures`` consecutive store failures, lookups
are skipped for ``breaker_cooldown_s`` (fallback at once instead of a timeout per request),
then one request probes the store again."""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import cached_property
from typing import TypeVar, get_args

import numpy as np
from redis.backoff import NoBackoff
from redis.retry import Retry

from riskcore.codec import LayoutMismatch, OnlineRecord, RecordCodec
from riskcore.feature_set import ENTITY_KEYS
from riskcore.model_bundle import ScoringModel
from riskcore.model_spec import KINDS, model_input
from riskcore.online_store import (
    Missing,
    OnlineStore,
    OnlineStoreError,
    RedisClient,
    connect,
    safe_url,
)
from riskcore.realtime import DESCRIPTIONS as REALTIME_DESCRIPTIONS
from riskcore.realtime import RealtimeStore
from riskcore.redis_transport import InFlight, Read, RedisTransport
from riskcore.registry import (
    CANARY,
    CHALLENGER,
    CHAMPION,
    MODEL_NAMES,
    ModelRegistry,
    RegisteredModel,
)
from riskcore.targets import TARGETS, TargetThresholds, Thresholds
from riskcore.timestamps import micros
from riskcore.transaction_features import DESCRIPTIONS as TRANSACTION_DESCRIPTIONS
from serving import metrics
from serving.config import ServingConfig
from serving.inference_log import CustomerHasher, InferenceLog, LogRow
from serving.schemas import FeatureSource, ScoreRequest

log = logging.getLogger("serving.scorer")
SEVERITY = {"approve": 0, "review": 1, "decline": 2}
DESCRIPTIONS = TRANSACTION_DESCRIPTIONS | REALTIME_DESCRIPTIONS
# Metric children bound once (``labels()`` costs a lock and a dict lookup a call).
_STAGE = {
    f"{s}_ms": metrics.STAGE_SECONDS.labels(s) for s in ("lookup", "features", "inference", "total")
}
_SOURCE = {s: metrics.FEATURE_SOURCE.labels(s) for s in get_args(FeatureSource)}
_DECISION = {d: metrics.DECISIONS.labels(d) for d in SEVERITY}
_SCORE = {t: metrics.SCORES.labels(t) for t in TARGETS}
TOP_REASONS = 5
T = TypeVar("T")
FAST_ROWS = 16


@dataclass(frozen=True)
class ModelSet:
    """The models acting (a champion per target, and a canary acting on its share of
    customers) and, when shadowing, the challengers (docs/architecture.md#rollout)."""

    champions: dict[str, RegisteredModel]
    shadows: dict[str, RegisteredModel]
    canaries: dict[str, RegisteredModel] = field(default_factory=dict)
    canary_shares: dict[str, float] = field(default_factory=dict)
    # (overrides, route) -> Acting, resolved once per model set: kept here, not on the scorer,
    # so a batch scoring in a thread during a reload never files an old set's Acting under
    # the new one.
    acting_cache: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def load(cls, config: ServingConfig) -> ModelSet:
        registry = ModelRegistry(config.tracking_uri)
        champions, shadows, canaries, shares = {}, {}, {}, {}
        for target, name in MODEL_NAMES.items():
            champion = registry.load(name, CHAMPION)
            if champion is None:
                raise RuntimeError(
                    f"no @{CHAMPION} of {name} in {config.tracking_uri}: train "
                    "and register one first (make demo)"
                )
            champions[target] = champion
            running = registry.canary(name)
            canary = _acting_canary(running, champion.version)
            if canary is not None:
                shares[target] = running[1]
                canaries[target] = RegisteredModel(
                    name, canary, CANARY, registry.load_bundle(name, canary)
                )
            if config.shadow:
                challenger = registry.load(name, CHALLENGER)
                if challenger is not None and challenger.version not in (champion.version, canary):
                    shadows[target] = challenger
        return cls(champions, shadows, canaries, shares)

    def moved(self, config: ServingConfig) -> list[str]:
        """The aliases that now name another version than the one loaded (a promotion, a
        canary started or halted, a rollback), and a canary whose share was changed: one
        small registry query per alias."""
        registry = ModelRegistry(config.tracking_uri)
        out = []
        for target, name in MODEL_NAMES.items():
            champion = registry.alias_version(name, CHAMPION)
            running = registry.canary(name)
            canary = _acting_canary(running, champion)
            share = self.canary_shares.get(target)
            if canary is not None and share is not None and running[1] != share:
                out.append(f"{name}@{CANARY} share {share:g} -> {running[1]:g}")
            loaded = {
                CHAMPION: (champion, self.champions[target]),
                CANARY: (canary, self.canaries.get(target)),
            }
            if config.shadow:
                challenger = registry.alias_version(name, CHALLENGER)
                shadow = challenger if challenger not in (champion, canary) else None
                loaded[CHALLENGER] = (shadow, self.shadows.get(target))
            for alias, (now, model) in loaded.items():
                if now != (model.version if model else None):
                    out.append(f"{name}@{alias} -> {now}")
        return out

    @cached_property  # a model set never changes (a reload makes a new one)
    def loaded(self) -> list[RegisteredModel]:
        return [*self.champions.values(), *self.canaries.values(), *self.shadows.values()]

    @cached_property
    def reads_realtime(self) -> bool:
        """Whether any model loaded reads real-time features."""
        return any(
            model.spec.realtime_features for m in self.loaded for model in m.bundle.models.values()
        )

    @cached_property
    def versions(self) -> list[str]:
        """The feature-set versions to look up (usually one)."""
        return list(dict.fromkeys(m.bundle.feature_set_version for m in self.loaded))

    @cached_property
    def entity_stores(self) -> list[tuple[str, str]]:
        """The other entities' (entity, feature-set version) the models read (usually three)."""
        pairs = (pair for m in self.loaded for pair in m.bundle.entity_versions.items())
        return list(dict.fromkeys(pairs))

    def route(self, customer_id: str) -> tuple[bool, ...]:
        """Per target, whether the canary decides for this customer: when the customer's
        bucket falls in its share (a customer always sees the same model)."""
        if not self.canaries:
            return NO_CANARY
        bucket = customer_bucket(customer_id)
        return tuple(
            target in self.canaries and bucket < self.canary_shares[target] for target in TARGETS
        )

    def acting(self, route: tuple[bool, ...]) -> dict[str, RegisteredModel]:
        return {
            target: self.canaries[target] if canary else self.champions[target]
            for target, canary in zip(TARGETS, route, strict=True)
        }

    def canary_labels(self) -> dict[str, str]:
        """Target -> the canary's label and its share, e.g. ``risk_fraud/3 on 5%``."""
        return {t: f"{m.label} on {self.canary_shares[t]:.0%}" for t, m in self.canaries.items()}

    def publish(self) -> None:
        metrics.MODEL_INFO.clear()
        roles = ((CHAMPION, self.champions), (CANARY, self.canaries), ("shadow", self.shadows))
        for role, models in roles:
            for target, m in models.items():
                version = m.bundle.feature_set_version
                metrics.MODEL_INFO.labels(target, role, m.label, version).set(1)


NO_CANARY = (False,) * len(TARGETS)


def _acting_canary(running: tuple[str, float, str] | None, champion: str | None) -> str | None:
    """The canary version that acts: one with a share, other than the champion."""
    if running is None or running[0] == champion or running[1] <= 0:
        return None
    return running[0]


@dataclass(frozen=True)
class Acting:
    """What decides for a route (champion or canary per target), resolved once: the models,
    the response's model fields and the thresholds that apply."""

    models: dict[str, RegisteredModel]
    versions: dict[str, str]  # target -> registered model/version
    roles: dict[str, str]  # target -> champion | canary
    # Per target, per model kind (behavioural | transaction_only): each model decides with
    # its own thresholds, chosen on the purchases it scores.
    thresholds: dict[str, dict[str, TargetThresholds]]
    shown: dict[tuple[str | None, ...], dict] = field(default_factory=dict)

    def thresholds_of(self, kinds: tuple[str | None, ...]) -> dict[str, TargetThresholds]:
        return {t: self.thresholds[t][k] for t, k in zip(TARGETS, kinds, strict=True) if k}

    def response_thresholds(self, kinds: tuple[str | None, ...]) -> dict:
        """The thresholds that applied, as the response shows them (one dict per kinds)."""
        found = self.shown.get(kinds)
        if found is None:
            found = self.shown[kinds] = {
                t: th.as_dict() for t, th in self.thresholds_of(kinds).items()
            }
        return found


def unit_hash(value: str, purpose: bytes, key: bytes = b"") -> float:
    """Where ``value`` falls in [0, 1), the same in every replica and restart: BLAKE2b of it,
    personalised by ``purpose`` so draws for different purposes are independent; ``key`` (up
    to 64 bytes) where a caller must not be able to predict the draw."""
    digest = hashlib.blake2b(value.encode(), digest_size=8, person=purpose, key=key).digest()
    return int.from_bytes(digest) / 2**64


def customer_bucket(customer_id: str) -> float:
    """The customer's place in [0, 1): the canary decides below its share."""
    return unit_hash(customer_id, b"risk-canary")


class Breaker:
    """Consecutive failures open it for a cooldown; the first call after that probes."""

    def __init__(self, failures: int, cooldown_s: float):
        self.threshold, self.cooldown_s = failures, cooldown_s
        self.failures, self.open_until = 0, 0.0

    def allow(self) -> bool:
        return time.monotonic() >= self.open_until

    def success(self) -> None:
        if self.failures or self.open_until:
            self.failures, self.open_until = 0, 0.0
            metrics.BREAKER_OPEN.set(0)

    def failure(self) -> bool:
        """Count a failure; True when this one opened the breaker (a failed probe after a
        cooldown opens it again at once)."""
        self.failures += 1
        if self.failures < self.threshold and not self.open_until:
            return False
        self.failures, self.open_until = 0, time.monotonic() + self.cooldown_s
        metrics.BREAKER_OPEN.set(1)
        return True


@dataclass(frozen=True, slots=True)
class Lookup:
    record: OnlineRecord | None
    # The customer's: online | request | fallback_* (schemas.FeatureSource); another entity's:
    # online | unknown | no_key | unavailable | event_before_snapshot (schemas.EntitySource)
    source: str


UNAVAILABLE = Lookup(None, "fallback_store_unavailable")  # down, slow, empty or expired
# The purchase happened before the served snapshot's as_of: the record counts the purchase
# itself and what followed it (its own future), so it is not read; the transaction-only model
# scores, as for a customer the snapshot does not know. Scored, not refused: a late or
# replayed purchase still gets a decision, and feature_source says why it is not "online".
BEFORE_SNAPSHOT = Lookup(None, "fallback_event_before_snapshot")
# Past capacity: a request that waited longer than the queue budget is not looked up.
OVERLOAD = Lookup(None, "fallback_overload")
# The store was not read for the customer: the request-only model scores (else transaction-only)
STORE_UNREAD = frozenset({UNAVAILABLE.source, OVERLOAD.source})
# A device, merchant or card without a record to read: its features are missing (NaN)
ENTITY_UNAVAILABLE = Lookup(None, "unavailable")  # store down, slow, empty, expired; overload
ENTITY_UNKNOWN = Lookup(None, "unknown")  # not in its snapshot (new, or quiet for 90 days)
ENTITY_NO_KEY = Lookup(None, "no_key")  # the request does not name it (no card_hash)
ENTITY_BEFORE_SNAPSHOT = Lookup(None, "event_before_snapshot")  # as for the customer


@dataclass(slots=True)
class Scored:
    transaction_id: str
    decision: str
    fraud_score: float
    default_score: float | None
    model_version: dict[str, str]
    model_role: dict[str, str]
    thresholds: dict[str, dict]
    holdout: bool
    feature_set_version: str | None
    features_as_of: datetime | None
    feature_source: str
    entity_sources: dict[str, str] | None  # entity -> online | unknown | ...; None: none read
    timing_ms: dict[str, float]
    reasons: list[dict] | None

    def to_dict(self) -> dict:
        """The response body (``ScoreResponse``), ready for orjson."""
        return {name: getattr(self, name) for name in self.__slots__}


class Scorer:
    def __init__(
        self,
        models: ModelSet,
        client: RedisClient,
        config: ServingConfig,
        *,
        inference_log: InferenceLog | None = None,
        where: str = "",
        events_client: RedisClient | None = None,
    ):
        self.models = models
        self.client = client
        self.config = config
        self.thresholds: Thresholds = config.thresholds  # the environment's overrides
        self.breaker = Breaker(config.breaker_failures, config.breaker_cooldown_s)
        self._holdout_ceiling = Decimal(str(config.holdout_max_amount))
        self.inference_log = inference_log
        self.where = where
        self._hash_customer = CustomerHasher(config.hash_key)
        self._stores: dict[str, OnlineStore] = {}
        # The snapshot lookups and the real-time reads share one transport: a score's reads
        # go out in one packet on this thread's connection (one round trip).
        self.transport = RedisTransport(client, where)
        self.realtime = RealtimeStore(client, transport=self.transport)  # the lookup's timeout
        self.events = RealtimeStore(events_client or client)  # records, with a longer one
        models.publish()

    @classmethod
    def open(cls, config: ServingConfig, *, inference_log: InferenceLog | None = None) -> Scorer:
        """A scorer as the service runs it: the models the registry's aliases name, and a Redis
        client that gives up after ``redis_timeout_ms`` without retrying (the fallback to the
        transaction-only model is the retry)."""
        timeout = config.redis_timeout_ms / 1000
        client = connect(
            config.redis_url,
            cluster=config.redis_cluster,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        events = connect(
            config.redis_url,
            cluster=config.redis_cluster,
            socket_timeout=config.events_timeout_ms / 1000,
        )
        return cls(
            ModelSet.load(config),
            client,
            config,
            inference_log=inference_log,
            where=safe_url(config.redis_url),
            events_client=events,
        )

    def _acting(self, models: ModelSet, route: tuple[bool, ...]) -> Acting:
        """A route's ``Acting``, resolved once per model set (a reload makes a new set) and
        overrides."""
        overrides = self.thresholds
        found = models.acting_cache.get((overrides, route))
        if found is None:
            acting = models.acting(route)
            chosen = {t: m.bundle.thresholds or {} for t, m in acting.items()}
            found = models.acting_cache[overrides, route] = Acting(
                models=acting,
                versions={t: m.label for t, m in acting.items()},
                roles={t: m.alias for t, m in acting.items()},
                thresholds={
                    t: {kind: overrides.resolve(t, chosen[t].get(kind)) for kind in KINDS}
                    for t in acting
                },
            )
        return found

    # -- the online store -------------------------------------------------------------------

    def store(self, version: str) -> OnlineStore:
        store = self._stores.get(version)
        if store is None:
            store = self._stores[version] = OnlineStore(
                self.client,
                version,
                codec=self._bundled_codec(version),
                where=self.where,
                transport=self.transport,
            )
        return store

    def _bundled_codec(self, version: str) -> RecordCodec | None:
        """The layout a model was trained with (its bundle carries the feature sets), so
        records decode without reading the store's layout key; None for older bundles."""
        for m in self.models.loaded:
            for fs in [m.bundle.feature_set, *m.bundle.entity_feature_sets.values()]:
                if fs is not None and fs.version == version:
                    return RecordCodec(fs)
        return None

    def _read_store(
        self, requests: list[ScoreRequest], models: ModelSet
    ) -> Generator[
        InFlight, None, tuple[dict[str, list[Lookup]], list[np.ndarray | None] | None, Entities]
    ]:
        """Each feature-set version's snapshot records, the device's, merchant's and card's
        records and (when a model reads them) the customer's and device's real-time features,
        read together: one packet per Redis node, one round trip. When the store cannot be
        read, every purchase falls back; a what-if's given record too when the models read
        real-time features: they learned with them, so are not used without.

        A generator: it yields once the reads are sent (their ``InFlight``), so the caller can
        do other work until the replies arrive, and returns the lookups (``scoring``)."""
        lookups = {v: self._given(requests, v) for v in models.versions}
        ask = {v: [i for i, found in enumerate(f) if found is None] for v, f in lookups.items()}
        entities = _unread_entities(requests, models)
        keyed = {
            pair: [i for i, found in enumerate(f) if found is ENTITY_UNAVAILABLE]
            for pair, f in entities.items()
        }
        realtime: list[np.ndarray | None] | None = None
        if models.reads_realtime:
            realtime = [None] * len(requests)
        elif not any(ask.values()) and not any(keyed.values()):
            return lookups, realtime, entities
        if not self.breaker.allow():
            return self._unavailable(lookups, realtime is not None), realtime, entities
        asked = [v for v, indexes in ask.items() if indexes]
        entities_asked = [pair for pair, indexes in keyed.items() if indexes]
        try:
            reads: list[Read] = [
                self.store(v).lookup_commands([requests[i].customer_id for i in ask[v]])
                for v in asked
            ]
            reads += [
                self.store(version).lookup_commands(
                    [getattr(requests[i], ENTITY_KEYS[entity]) for i in keyed[entity, version]]
                )
                for entity, version in entities_asked
            ]
            if realtime is not None:  # for every purchase: most customers are known
                queries = [
                    (r.customer_id, r.event_ts, r.transaction_id, r.device_id) for r in requests
                ]
                reads.append(self.realtime.read_commands(queries))
            in_flight = self.transport.send_reads(reads)
            try:
                yield in_flight
            except BaseException:  # the caller gave up on this batch
                in_flight.abandon()
                raise
            replies = in_flight.receive_reads()
        except OnlineStoreError as exc:
            self._failed(exc)
            return self._unavailable(lookups, realtime is not None), realtime, entities
        self.breaker.success()
        for k, v in enumerate(asked):
            try:
                found = [_as_lookup(value) for value in reads[k].decode(replies[k])]
            except LayoutMismatch as exc:
                self._failed(exc)
                found = [UNAVAILABLE] * len(ask[v])
            for i, lookup in zip(ask[v], found, strict=True):
                if lookup.record is not None and lookup.record.as_of > requests[i].event_ts:
                    lookup = BEFORE_SNAPSHOT
                lookups[v][i] = lookup
        for k, pair in enumerate(entities_asked, start=len(asked)):
            try:
                decoded = reads[k].decode(replies[k])
            except LayoutMismatch as exc:
                self._failed(exc)
                continue  # unavailable, as they are
            for i, value in zip(keyed[pair], decoded, strict=True):
                entities[pair][i] = _as_entity_lookup(value, requests[i].event_ts)
        if realtime is not None:
            realtime[:] = reads[-1].decode(replies[-1])
        return lookups, realtime, entities

    def _given(self, requests: list[ScoreRequest], version: str) -> list[Lookup | None]:
        """The records of what-if requests (the caller's snapshot values); None: to look up."""
        out: list[Lookup | None] = [None] * len(requests)
        for i, r in enumerate(requests):
            if r.features is not None:
                try:
                    codec = self.store(version).codec  # the bundle's (else the store's layout)
                except OnlineStoreError:
                    out[i] = UNAVAILABLE
                    continue
                as_of = r.features_as_of or r.event_ts
                out[i] = Lookup(codec.from_values(r.customer_id, as_of, r.features), "request")
        return out

    @staticmethod
    def _unavailable(
        lookups: dict[str, list[Lookup | None]], records_too: bool
    ) -> dict[str, list[Lookup]]:
        """Every lookup not done falls back (and, ``records_too``, every given record)."""
        for found in lookups.values():
            for i, lookup in enumerate(found):
                if lookup is None or (records_too and lookup.record is not None):
                    found[i] = UNAVAILABLE
        return lookups

    def _failed(self, exc: Exception) -> None:
        metrics.STORE_ERRORS.inc()
        if self.breaker.failure():
            log.warning(
                "online store failing, transaction-only models for %.1f s: %s",
                self.breaker.cooldown_s,
                exc,
            )

    # -- scoring ----------------------------------------------------------------------------

    def score(self, request: ScoreRequest, received: float | None = None) -> Scored:
        return self.score_many([request], [received] if received else None)[0]

    def score_many(
        self, requests: list[ScoreRequest], received: list[float] | None = None
    ) -> list[Scored]:
        """Score transactions: one round trip to Redis (the snapshot records and the real-time
        state of all of them) and one pass per model. ``received``: when each request arrived
        (its total time counts from there: parsing and waiting for its batch included)."""
        return waited(self.scoring(requests, received))

    def scoring(
        self,
        requests: list[ScoreRequest],
        received: list[float] | None = None,
        *,
        look_up: bool = True,
    ) -> Generator[InFlight, None, list[Scored]]:
        """``score_many`` as a generator that yields while Redis answers (the reads' ``InFlight``:
        its socket turns readable when the replies are in), for an event loop that serves
        other requests meanwhile (``serving/app.py``'s ``MicroBatcher``); it yields nothing
        when there is nothing to read. ``look_up=False``: overload, every request is scored
        by the transaction-only models at once (``fallback_overload``)."""
        began = time.perf_counter()
        models = self.models  # one consistent set for the whole call: a reload swaps it
        if look_up:
            lookups, realtime, entities = yield from self._read_store(requests, models)
        else:
            lookups, realtime = {v: [OVERLOAD] * len(requests) for v in models.versions}, None
            entities = {p: [ENTITY_UNAVAILABLE] * len(requests) for p in models.entity_stores}
        looked_up = time.perf_counter()
        txns = [_transaction(r) for r in requests]
        acting = [self._acting(models, models.route(r.customer_id)) for r in requests]
        # Each purchase's device, merchant and card lookups, once for its targets and its log
        by_request = [
            {pair: found[i] for pair, found in entities.items()} for i in range(len(txns))
        ]
        inputs: dict[str, list[tuple[ScoringModel, np.ndarray] | None]] = {}
        for target in TARGETS:
            inputs[target] = [
                None
                if target == "default" and r.installments <= 1
                else _model_and_input(
                    (model := a.models[target]),
                    txn,
                    lookups[model.bundle.feature_set_version][i],
                    realtime and realtime[i],
                    by_request[i],
                )
                for i, (r, txn, a) in enumerate(zip(requests, txns, acting, strict=True))
            ]
        built = time.perf_counter()
        scores = {target: _predict(rows) for target, rows in inputs.items()}
        results, per_target = [], []
        for i, r in enumerate(requests):
            a = acting[i]
            kinds = tuple(
                row[0].spec.kind if row else None for row in (inputs[t][i] for t in TARGETS)
            )
            decision, target, levels = _decide(
                {t: s[i] for t, s in scores.items()}, a.thresholds_of(kinds)
            )
            per_target.append(levels)
            holdout = decision == "decline" and self._held_out(r)
            reasons = None
            if decision != "approve" or r.explain:
                model, vector = inputs[target][i]
                bundle = a.models[target].bundle
                record = lookups[bundle.feature_set_version][i].record
                reasons = _reasons(target, model, vector, record, bundle.descriptions)
            fraud_bundle = a.models["fraud"].bundle
            fraud_version = fraud_bundle.feature_set_version
            found = lookups[fraud_version][i]
            results.append(
                Scored(
                    transaction_id=r.transaction_id,
                    decision=decision,
                    fraud_score=scores["fraud"][i],
                    default_score=scores["default"][i],
                    model_version=a.versions,
                    model_role=a.roles,
                    thresholds=a.response_thresholds(kinds),
                    holdout=holdout,
                    feature_set_version=fraud_version if found.record is not None else None,
                    features_as_of=found.record.as_of if found.record is not None else None,
                    feature_source=found.source,
                    entity_sources={
                        e: by_request[i][e, v].source
                        for e, v in fraud_bundle.entity_versions.items()
                    }
                    or None,
                    timing_ms={},
                    reasons=reasons,  # a held-out decline keeps them: why it would decline
                )
            )
            if holdout:
                results[-1].decision = "approve"
        done = time.perf_counter()
        stages = {
            "lookup_ms": (looked_up - began) * 1e3,
            "features_ms": (built - looked_up) * 1e3,
            "inference_ms": (done - built) * 1e3,
        }
        for stage, ms in stages.items():
            _STAGE[stage].observe(ms / 1e3)
        for i, result in enumerate(results):
            total = done - (received[i] if received else began)
            result.timing_ms = stages | {"total_ms": total * 1e3}
            _STAGE["total_ms"].observe(total)
            for target in scores:
                if scores[target][i] is not None:
                    _SCORE[target].observe(scores[target][i])
            if self.inference_log is not None:
                self._log(
                    i,
                    requests[i],
                    txns[i],
                    result,
                    inputs["fraud"][i],
                    models,
                    lookups,
                    realtime and realtime[i],
                    per_target[i],
                    by_request[i],
                )
        # Counted once a batch (a counter's increment takes a lock)
        for source, n in Counter(r.feature_source for r in results).items():
            _SOURCE[source].inc(n)
        for decision, n in Counter(r.decision for r in results).items():
            _DECISION[decision].inc(n)
        return results

    def _held_out(self, request: ScoreRequest) -> bool:
        """Whether a would-be decline is approved as part of the random holdout: under the
        amount ceiling, drawn once per customer and UTC day (the service's clock: a request's
        own time could be backdated for a new draw) by a keyed hash. A declined fraudster who
        retries with new transaction ids or times draws the same, and cannot find ids that
        draw a holdout without the service's key. The price: a customer held out is held out
        for the rest of the day, each of those approvals under the ceiling."""
        share = self.config.holdout_share
        if share <= 0 or request.amount > self._holdout_ceiling:
            return False
        day = datetime.now(UTC).date().isoformat()
        draw = unit_hash(f"{request.customer_id}|{day}", b"risk-holdout", self._hash_customer.key)
        return draw < share

    def _log(
        self, i: int, request, txn, result, fraud_input, models, lookups, realtime, levels, entities
    ) -> None:
        model, vector = fraud_input
        shadow_inputs = None
        if models.shadows:  # the shadows' inputs are built later, in the log's thread
            shadow_inputs = (
                txn,
                {v: found[i] for v, found in lookups.items()},
                realtime,
                entities,
            )
        as_of = result.features_as_of
        self.inference_log.append(
            LogRow(
                transaction_id=request.transaction_id,
                customer_hash=self._hash_customer(request.customer_id),
                event_ts=micros(request.event_ts),
                scored_at=time.time_ns() // 1000,
                decision=result.decision,
                fraud_score=result.fraud_score,
                default_score=result.default_score,
                fraud_model=result.model_version["fraud"],
                default_model=(
                    result.model_version.get("default")
                    if result.default_score is not None
                    else None
                ),
                fraud_decision=levels["fraud"],
                default_decision=levels["default"],
                fraud_role=result.model_role["fraud"],
                default_role=(
                    result.model_role.get("default") if result.default_score is not None else None
                ),
                holdout=result.holdout,
                holdout_weight=1 / self.config.holdout_share if result.holdout else None,
                model_kind=model.spec.kind,
                feature_set_version=result.feature_set_version,
                features_as_of=as_of and micros(as_of),
                feature_source=result.feature_source,
                lookup_ms=result.timing_ms["lookup_ms"],
                inference_ms=result.timing_ms["inference_ms"],
                total_ms=result.timing_ms["total_ms"],
                feature_names=model.spec.feature_names,
                vector=vector,
                shadow_inputs=shadow_inputs,
            )
        )

    def shadow_scores(self, rows: list[LogRow]) -> None:
        """The challengers' scores of logged rows (in the log's thread, after the responses)."""
        models = self.models
        for target, shadow in models.shadows.items():
            version = shadow.bundle.feature_set_version
            inputs = []
            for row in rows:
                txn, found, realtime, entities = row.shadow_inputs or (None, {}, None, {})
                eligible = txn is not None and (target != "default" or txn["installments"] > 1)
                inputs.append(
                    _model_and_input(
                        shadow, txn, found.get(version, UNAVAILABLE), realtime, entities
                    )
                    if eligible
                    else None
                )
            for row, score in zip(rows, _predict(inputs, fast=False), strict=True):
                if score is not None:
                    setattr(row, f"shadow_{target}_score", score)
                    setattr(row, f"shadow_{target}_model", shadow.label)


def _decide(
    scores: dict[str, float | None], thresholds: dict[str, TargetThresholds]
) -> tuple[str, str, dict[str, str | None]]:
    """The most severe decision of the targets (decline if either declines, else review if
    either reviews), the target that made it (the fraud model explains an approval), and each
    target's own decision (None where it did not score)."""
    decision, by = "approve", "fraud"
    levels: dict[str, str | None] = dict.fromkeys(scores)
    for target, score in scores.items():
        if score is None:
            continue
        level = levels[target] = thresholds[target].decide(score)  # the scoring model's
        if SEVERITY[level] > SEVERITY[decision]:
            decision, by = level, target
    return decision, by, levels


def waited(steps: Generator[InFlight, None, T]) -> T:
    """What a generator of ``Scorer`` returns, waiting in place (blocking) while Redis answers."""
    try:
        while True:
            next(steps)
    except StopIteration as done:
        return done.value


def _as_lookup(found: OnlineRecord | Missing) -> Lookup:
    if isinstance(found, OnlineRecord):
        return Lookup(found, "online")
    if found.reason == "unknown_customer":
        return Lookup(None, "fallback_new_customer")
    return UNAVAILABLE  # no generation serving, or expired


Entities = dict[tuple[str, str], list[Lookup]]  # (entity, version) -> per request


def _unread_entities(requests: list[ScoreRequest], models: ModelSet) -> Entities:
    """Before the read: ``ENTITY_NO_KEY`` where a request does not name the entity, else
    ``ENTITY_UNAVAILABLE`` (what stays when the store cannot be read)."""
    return {
        (entity, version): [
            ENTITY_UNAVAILABLE if getattr(r, ENTITY_KEYS[entity]) else ENTITY_NO_KEY
            for r in requests
        ]
        for entity, version in models.entity_stores
    }


def _as_entity_lookup(found: OnlineRecord | Missing, event_ts: datetime) -> Lookup:
    if isinstance(found, OnlineRecord):
        # Its own future (as for a customer's record): not read
        return Lookup(found, "online") if found.as_of <= event_ts else ENTITY_BEFORE_SNAPSHOT
    return ENTITY_UNKNOWN if found.reason == "unknown_customer" else ENTITY_UNAVAILABLE


def _transaction(r: ScoreRequest) -> dict:
    """The fields ``transaction_features`` reads, as training passes them."""
    return {
        "event_ts": r.event_ts,
        "amount": r.amount,
        "channel": r.channel,
        "merchant_category": r.merchant_category,
        "device_id": r.device_id,
        "country": r.country,
        "installments": r.installments,
    }


def _model_and_input(
    registered: RegisteredModel,
    txn: dict,
    found: Lookup,
    realtime: np.ndarray | None = None,
    entities: dict[tuple[str, str], Lookup] | None = None,
) -> tuple[ScoringModel, np.ndarray]:
    """The tier that scores (docs/architecture.md#model-tiers) and its input: behavioural with
    the customer's record, request-only when the store was not read, else transaction-only."""
    bundle, record = registered.bundle, found.record
    if record is not None:
        model = bundle.behavioural
    elif found.source in STORE_UNREAD:
        model = bundle.request_only
    else:
        model = bundle.transaction_only
    spec = model.spec
    records = {
        e: entities[e, v].record
        for e, v in spec.entity_feature_sets.items()
        if entities and (e, v) in entities
    }
    return model, model_input(spec, txn, record, realtime, records)


def _predict(
    rows: list[tuple[ScoringModel, np.ndarray] | None], fast: bool = True
) -> list[float | None]:
    """Scores of (model, input) rows: LightGBM's single-row fast path for a model's first
    ``FAST_ROWS`` rows (~4 us a row here), one ``predict`` over a bigger group (~40 us to start,
    then ~2 us a row); both give the same scores, bit for bit."""
    out: list[float | None] = [None] * len(rows)
    groups: dict[int, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        if row is not None:
            groups[id(row[0])].append(i)
    for indexes in groups.values():
        model = rows[indexes[0]][0]
        if fast and len(indexes) <= FAST_ROWS:
            for i in indexes:
                out[i] = model.fast.predict(rows[i][1])
        else:
            scores = model.predict(np.vstack([rows[i][1] for i in indexes]))
            for i, score in zip(indexes, scores, strict=True):
                out[i] = float(score)
    return out


def _reasons(
    target: str,
    model: ScoringModel,
    vector: np.ndarray,
    record: OnlineRecord | None,
    descriptions: dict[str, str],
) -> list[dict]:
    """The features that pushed this score up the most (exact SHAP contributions in log-odds,
    from LightGBM's ``pred_contrib``), with their values and meanings (``descriptions``: the
    bundle's snapshot features, the device's, merchant's and card's included)."""
    contributions = model.fast.contributions(vector)[:-1]  # the last one is the bias
    spec = model.spec
    columns = {c.name: c for c in record.codec.features} if record is not None else {}
    top = np.argsort(-contributions, kind="stable")[:TOP_REASONS]
    reasons = []
    for j in top:
        name, value = spec.feature_names[j], float(vector[j])
        column = columns.get(name)
        shown: float | str | None = None if value != value else value
        if shown is not None and name in spec.categorical:
            vocabulary = spec.vocabularies.get(name) or (column.categories if column else None)
            shown = vocabulary[int(value)] if vocabulary else value
        reasons.append(
            {
                "code": name.upper(),
                "target": target,
                "feature": name,
                "value": shown,
                "contribution": float(contributions[j]),
                "description": DESCRIPTIONS.get(name)
                or (column.description if column else descriptions.get(name, "")),
            }
        )
    return reasons
