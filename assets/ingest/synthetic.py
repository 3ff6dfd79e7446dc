"""A deterministic, seeded generator of card and BNPL transactions with late-arriving labels.

Every day is generated on its own from ``(seed, day)``: a daily partition is reproducible, and
the same seed gives byte-identical data. The customer population (spend level, category tastes,
devices, home country, weekly and daily rhythm) is drawn once from the seed.

Three planted patterns carry the labels; none is named by any column, they show only through
behaviour (see docs/data.md, "The embedded generator and its planted patterns"):

* account takeover: a fraudster probes a customer's account from a new device, then spends in
  bursts over a few days online, often abroad, in resale-friendly categories;
* BNPL default: in the ~45 days before defaulting, a customer spends more and more, more
  erratically, increasingly on instalment plans;
* card testing: a handful of tiny online purchases at digital-goods merchants from a new device.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assets.ingest.contract import LABELS_SCHEMA, TRANSACTIONS_SCHEMA
from riskcore import settings

CATEGORIES = (
    "grocery",
    "restaurants",
    "fuel",
    "retail",
    "utilities",
    "health",
    "travel",
    "entertainment",
    "electronics",
    "digital_goods",
    "gift_cards",
    "crypto",
)
# Log-multiplier of a purchase's size by category (travel and electronics cost more).
_CATEGORY_AMOUNT = np.array([0.0, -0.3, 0.1, 0.3, 0.5, 0.2, 1.2, -0.2, 1.0, -0.8, 0.4, 0.8])
_RESALE_CATEGORIES = np.array([8, 9, 10, 11])  # electronics, digital goods, gift cards, crypto
_DIGITAL_GOODS, _GIFT_CARDS = 9, 10

COUNTRIES = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "CA", "MX", "BR", "IN", "JP")
CURRENCIES = ("USD", "GBP", "EUR", "EUR", "EUR", "EUR", "EUR", "CAD", "MXN", "BRL", "INR", "JPY")
_HOME_WEIGHTS = np.array([40, 10, 9, 8, 6, 5, 3, 6, 4, 4, 3, 2], dtype=float)
CHANNELS = ("online", "pos", "app")
_ONLINE, _POS, _APP = 0, 1, 2
_PLANS = np.array([3, 4, 6, 12])

EPOCH = date(2020, 1, 1)  # day numbers (and so random streams) are absolute, not run-relative
_US_PER_DAY = 86_400_000_000
_BACKGROUND, _TAKEOVER, _DEFAULT_RAMP, _CARD_TEST, _DRIFT = 1, 2, 3, 4, 5
# The injected drift: amounts x e^0.6 (~1.8), a third of purchases moved to resale categories,
# and a third of card-present purchases moved online.
_DRIFT_AMOUNT, _DRIFT_RESALE, _DRIFT_ONLINE = 0.6, 0.35, 0.35
_FRAUD, _DEFAULT = 1, 2
MAX_LABEL_DELAY_DAYS = 91  # labels arrive at most this long after their transaction
_RAMP_DAYS = 45


@dataclass(frozen=True)
class GeneratorConfig:
    seed: int = 7
    customers: int = 20_000
    merchants: int = 5_000
    # Customers join, churn and meet their incidents around this date.
    anchor: date = date(2026, 1, 1)
    card_hash_key: bytes = b""
    # From this day on (None: never) everyday spending drifts: larger amounts, a shift towards
    # resale-friendly categories and online purchases (``make drift-demo``). Earlier days stay
    # byte-identical.
    drift_from: date | None = None


def _day_number(day: date) -> int:
    return (day - EPOCH).days


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A bijection on uint64: distinct inputs give distinct, well-mixed outputs."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _ids(prefix: str, values: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(
        prefix, pc.utf8_lpad(pc.cast(pa.array(values, pa.uint64()), pa.string()), 20, "0"), ""
    )


def _luhn_pans(n: int, rng: np.random.Generator) -> list[str]:
    """Synthetic 16-digit card numbers with a valid Luhn check digit; only ever hashed."""
    body = rng.integers(0, 10, size=(n, 15))
    body[:, 0] = 4
    doubled = body[:, ::-2] * 2
    total = (doubled - 9 * (doubled > 9)).sum(axis=1) + body[:, -2::-2].sum(axis=1)
    check = (10 - total % 10) % 10
    digits = np.concatenate([body, check[:, None]], axis=1) + ord("0")
    return digits.astype(np.uint8).view("S16").ravel().astype(str).tolist()


def card_hash(pans: list[str], key: bytes) -> list[str]:
    return [hmac.new(key, p.encode(), hashlib.sha256).hexdigest() for p in pans]


@dataclass(frozen=True)
class Population:
    config: GeneratorConfig
    join_day: np.ndarray  # absolute day numbers
    churn_day: np.ndarray
    rate: np.ndarray  # purchases a day
    mu: np.ndarray
    sigma: np.ndarray
    category_cdf: np.ndarray  # (customers, categories)
    home: np.ndarray
    n_devices: np.ndarray
    night_p: np.ndarray
    weekend_factor: np.ndarray
    online_p: np.ndarray
    app_share: np.ndarray
    bnpl_p: np.ndarray
    takeover_day: np.ndarray  # -1: never
    takeover_days: np.ndarray
    default_day: np.ndarray  # -1: never
    merchant_by_category: tuple[np.ndarray, ...]
    customer_ids: pa.Array
    card_hashes: pa.Array


@lru_cache(maxsize=4)
def population(config: GeneratorConfig) -> Population:
    rng = np.random.default_rng([config.seed, 0xC0FFEE])
    n = config.customers
    anchor = _day_number(config.anchor)
    established = rng.random(n) < 0.7
    join_day = np.where(
        established, anchor - rng.integers(1, 700, n), anchor + rng.integers(0, 365, n)
    )
    churn_day = np.where(rng.random(n) < 0.08, anchor + rng.integers(0, 365, n), 1 << 40)
    alphas = rng.gamma(0.35, 1.0, size=(n, len(CATEGORIES))) + 1e-9
    # Risky categories are a small slice of ordinary spending.
    alphas[:, _RESALE_CATEGORIES] *= 0.15
    cdf = np.cumsum(alphas / alphas.sum(axis=1, keepdims=True), axis=1)
    cdf[:, -1] = 1.0
    bnpl_user = rng.random(n) < 0.35
    takeover = (rng.random(n) < 0.006) & established
    defaulter = bnpl_user & (rng.random(n) < 0.06)
    merchant_category = rng.choice(len(CATEGORIES), size=config.merchants)
    merchant_category[: len(CATEGORIES)] = np.arange(len(CATEGORIES))  # every category has one
    pans = _luhn_pans(n, rng)
    key = config.card_hash_key or settings.load().hash_key()
    return Population(
        config=config,
        join_day=join_day,
        churn_day=churn_day,
        rate=rng.gamma(1.6, 0.16, n),
        mu=rng.normal(3.4, 0.7, n),
        sigma=rng.uniform(0.25, 0.8, n),
        category_cdf=cdf.astype(np.float32),
        home=rng.choice(len(COUNTRIES), size=n, p=_HOME_WEIGHTS / _HOME_WEIGHTS.sum()),
        n_devices=np.minimum(1 + rng.poisson(0.6, n), 4),
        night_p=rng.beta(1.0, 14.0, n),
        weekend_factor=rng.lognormal(0.0, 0.35, n),
        online_p=rng.beta(2.0, 3.0, n),
        app_share=rng.beta(1.5, 3.0, n),
        bnpl_p=np.where(bnpl_user, rng.beta(2.0, 6.0, n), 0.0),
        takeover_day=np.where(takeover, anchor + rng.integers(-20, 365, n), -1),
        takeover_days=rng.integers(2, 6, n),
        default_day=np.where(defaulter, anchor + rng.integers(20, 400, n), -1),
        merchant_by_category=tuple(
            np.flatnonzero(merchant_category == c) for c in range(len(CATEGORIES))
        ),
        customer_ids=pc.binary_join_element_wise(
            "cus_", pc.utf8_lpad(pc.cast(pa.array(np.arange(n)), pa.string()), 8, "0"), ""
        ),
        card_hashes=pa.array(card_hash(pans, key)),
    )


@dataclass
class _Batch:
    """Columns of one stream's purchases for one day, as numpy arrays."""

    stream: int
    customer: np.ndarray
    ts_us: np.ndarray  # microseconds since the Unix epoch, UTC
    cents: np.ndarray
    category: np.ndarray
    channel: np.ndarray
    device: np.ndarray  # uint64 device key, 0 = no device
    country: np.ndarray
    installments: np.ndarray
    label: np.ndarray  # 0 none, 1 fraud, 2 default
    label_delay_us: np.ndarray


def _day_start_us(day_number: int) -> int:
    start = datetime.combine(EPOCH + timedelta(days=day_number), datetime.min.time(), UTC)
    return int(start.timestamp()) * 1_000_000


def _device_key(pop: Population, customer: np.ndarray, slot: np.ndarray) -> np.ndarray:
    salt = np.uint64(pop.config.seed) << np.uint64(40)
    return _splitmix64(salt ^ (customer.astype(np.uint64) * np.uint64(64) + slot)) | np.uint64(1)


def _purchases(
    pop: Population,
    rng: np.random.Generator,
    day_number: int,
    stream: int,
    customer: np.ndarray,
    *,
    hours: np.ndarray,
    mu_shift: np.ndarray | float = 0.0,
    sigma_shift: np.ndarray | float = 0.0,
    category: np.ndarray | None = None,
) -> _Batch:
    """Purchases of ``customer`` (one entry per purchase) shaped by each customer's habits."""
    k = len(customer)
    if category is None:
        category = (rng.random((k, 1), dtype=np.float32) > pop.category_cdf[customer]).sum(axis=1)
    z = rng.standard_normal(k)
    log_amount = pop.mu[customer] + _CATEGORY_AMOUNT[category] + mu_shift
    dollars = np.exp(log_amount + (pop.sigma[customer] + sigma_shift) * z)
    cents = np.clip(np.round(dollars * 100), 50, 2_000_000).astype(np.int64)
    u = rng.random(k)
    online = pop.online_p[customer]
    channel = np.where(
        u < online,
        _ONLINE,
        np.where(u < online + (1 - online) * pop.app_share[customer], _APP, _POS),
    )
    slot = np.floor(rng.random(k) * pop.n_devices[customer]).astype(np.uint64)
    device = _device_key(pop, customer, slot)
    # Card-present purchases mostly carry no device (a tap with a wallet phone does).
    device[(channel == _POS) & (rng.random(k) < 0.8)] = 0
    travelling = rng.random(k) < 0.02
    country = np.where(
        travelling,
        (pop.home[customer] + rng.integers(1, len(COUNTRIES), k)) % len(COUNTRIES),
        pop.home[customer],
    )
    plan = (rng.random(k) < pop.bnpl_p[customer]) & (cents >= 3_000)
    installments = np.where(plan, rng.choice(_PLANS, k), 1)
    ts_us = _day_start_us(day_number) + (hours * 3_600_000_000).astype(np.int64)
    return _Batch(
        stream,
        customer,
        ts_us,
        cents,
        category,
        channel,
        device,
        country,
        installments,
        np.zeros(k, np.int8),
        np.zeros(k, np.int64),
    )


def _daytime_hours(pop: Population, rng: np.random.Generator, customer: np.ndarray) -> np.ndarray:
    k = len(customer)
    night = rng.random(k) < pop.night_p[customer]
    day_hours = np.clip(rng.normal(14.0, 3.8, k), 6.0, 23.999999)
    return np.where(night, rng.uniform(0.0, 6.0, k), day_hours)


def _active(pop: Population, day_number: int) -> np.ndarray:
    gone = (pop.default_day >= 0) & (day_number >= pop.default_day)
    return (pop.join_day <= day_number) & (day_number < pop.churn_day) & ~gone


def _background(pop: Population, day_number: int) -> _Batch:
    rng = np.random.default_rng([pop.config.seed, day_number, _BACKGROUND])
    weekend = (EPOCH + timedelta(days=day_number)).weekday() >= 5
    lam = pop.rate * np.where(weekend, pop.weekend_factor, 1.0) * _active(pop, day_number)
    customer = np.repeat(np.arange(len(lam)), rng.poisson(lam))
    hours = _daytime_hours(pop, rng, customer)
    drift = pop.config.drift_from
    if drift is None or day_number < _day_number(drift):
        return _purchases(pop, rng, day_number, _BACKGROUND, customer, hours=hours)
    # Drifted: the same draws as an ordinary day (categories first, as _purchases draws them),
    # then the shifts from a stream of their own.
    shift = np.random.default_rng([pop.config.seed, day_number, _DRIFT])
    k = len(customer)
    category = (rng.random((k, 1), dtype=np.float32) > pop.category_cdf[customer]).sum(axis=1)
    moved = shift.random(k) < _DRIFT_RESALE
    category[moved] = shift.choice(_RESALE_CATEGORIES, int(moved.sum()))
    batch = _purchases(
        pop,
        rng,
        day_number,
        _BACKGROUND,
        customer,
        hours=hours,
        mu_shift=_DRIFT_AMOUNT,
        category=category,
    )
    online = (batch.channel == _POS) & (shift.random(k) < _DRIFT_ONLINE)
    batch.channel[online] = _ONLINE
    own_device = np.zeros(int(online.sum()), np.uint64)  # slot 0: a device the customer has
    batch.device[online] = _device_key(pop, customer[online], own_device)
    return batch


def _takeover(pop: Population, day_number: int) -> _Batch:
    """Account takeover: a probe from a new device, then bursts of resale-friendly spending."""
    rng = np.random.default_rng([pop.config.seed, day_number, _TAKEOVER])
    since = day_number - pop.takeover_day
    victims = np.flatnonzero((pop.takeover_day >= 0) & (since >= 0) & (since < pop.takeover_days))
    probing = since[victims] == 0
    counts = np.where(probing, rng.integers(1, 3, len(victims)), rng.integers(2, 7, len(victims)))
    customer = np.repeat(victims, counts)
    probe = np.repeat(probing, counts)
    k = len(customer)
    # Each burst runs inside a couple of hours that can fall at any time of day.
    start = np.repeat(rng.uniform(0.0, 22.0, len(victims)), counts)
    category = np.where(
        rng.random(k) < 0.75, rng.choice(_RESALE_CATEGORIES, k), rng.integers(0, 12, k)
    )
    batch = _purchases(
        pop,
        rng,
        day_number,
        _TAKEOVER,
        customer,
        hours=start + rng.uniform(0.0, 2.0, k),
        mu_shift=np.where(probe, -1.5, 0.9),
        sigma_shift=0.3,
        category=category,
    )
    batch.channel[:] = np.where(rng.random(k) < 0.8, _ONLINE, _APP)
    batch.device[:] = _device_key(pop, customer, np.full(k, 63, np.uint64))
    abroad = np.repeat(rng.random(len(victims)) < 0.5, counts)
    foreign = (pop.home[customer] + 1 + customer % (len(COUNTRIES) - 1)) % len(COUNTRIES)
    batch.country[:] = np.where(abroad, foreign, batch.country)
    batch.installments[:] = 1
    batch.label[:] = _FRAUD
    batch.label_delay_us[:] = rng.integers(2 * _US_PER_DAY, 40 * _US_PER_DAY, k)
    return batch


def _default_ramp(pop: Population, day_number: int) -> _Batch:
    """Before a BNPL default: rising, erratic spending, more and more of it on plans."""
    rng = np.random.default_rng([pop.config.seed, day_number, _DEFAULT_RAMP])
    left = pop.default_day - day_number
    ramping = np.flatnonzero((pop.default_day >= 0) & (left > 0) & (left <= _RAMP_DAYS))
    ramping = ramping[pop.join_day[ramping] <= day_number]
    progress = 1.0 - left[ramping] / _RAMP_DAYS
    counts = rng.poisson(pop.rate[ramping] * (0.3 + 3.0 * progress))
    customer = np.repeat(ramping, counts)
    progress = np.repeat(progress, counts)
    batch = _purchases(
        pop,
        rng,
        day_number,
        _DEFAULT_RAMP,
        customer,
        hours=_daytime_hours(pop, rng, customer),
        mu_shift=0.3 + 0.6 * progress,
        sigma_shift=0.5 * progress,
    )
    k = len(customer)
    on_plan = rng.random(k) < 0.5 + 0.45 * progress
    batch.installments[:] = np.where(on_plan, rng.choice(_PLANS, k), batch.installments)
    batch.cents[:] = np.where(on_plan, np.maximum(batch.cents, 3_000), batch.cents)
    batch.label[:] = np.where(batch.installments > 1, _DEFAULT, 0)
    batch.label_delay_us[:] = rng.integers(30 * _US_PER_DAY, 90 * _US_PER_DAY, k)
    return batch


def _card_test(pop: Population, day_number: int) -> _Batch:
    """Card testing: a few tiny digital purchases from a stranger's device."""
    rng = np.random.default_rng([pop.config.seed, day_number, _CARD_TEST])
    # ~2 in 10,000 customers a day; drawn as indices so a day costs O(victims), not O(customers)
    n = len(pop.rate)
    tested = np.unique(rng.integers(0, n, rng.binomial(n, 2e-4)))
    tested = tested[_active(pop, day_number)[tested]]
    counts = rng.integers(2, 6, len(tested))
    customer = np.repeat(tested, counts)
    k = len(customer)
    start = np.repeat(rng.uniform(0.0, 23.0, len(tested)), counts)
    category = np.where(rng.random(k) < 0.7, _DIGITAL_GOODS, _GIFT_CARDS)
    batch = _purchases(
        pop,
        rng,
        day_number,
        _CARD_TEST,
        customer,
        hours=start + rng.uniform(0.0, 0.9, k),
        category=category,
    )
    batch.cents[:] = rng.integers(50, 300, k)
    batch.channel[:] = _ONLINE
    batch.device[:] = _device_key(pop, customer, np.full(k, 62, np.uint64))
    batch.installments[:] = 1
    batch.label[:] = _FRAUD
    batch.label_delay_us[:] = rng.integers(2 * _US_PER_DAY, 20 * _US_PER_DAY, k)
    return batch


def _incidents(pop: Population, day_number: int) -> list[_Batch]:
    return [_takeover(pop, day_number), _default_ramp(pop, day_number), _card_test(pop, day_number)]


def _transaction_ids(pop: Population, day_number: int, batch: _Batch) -> np.ndarray:
    """Opaque, unique ids: a bijective mix of (seed, day, stream, sequence)."""
    seq = np.arange(len(batch.customer), dtype=np.uint64)
    raw = (
        (np.uint64(pop.config.seed & 0xFF) << np.uint64(56))
        | (np.uint64(day_number) << np.uint64(36))
        | (np.uint64(batch.stream) << np.uint64(32))
        | seq
    )
    return _splitmix64(raw)


def _concat(pop: Population, day_number: int, batches: list[_Batch]) -> dict[str, np.ndarray]:
    columns = {
        name: np.concatenate([getattr(b, name) for b in batches])
        for name in _Batch.__dataclass_fields__
        if name != "stream"
    }
    columns["id"] = np.concatenate([_transaction_ids(pop, day_number, b) for b in batches])
    return columns


def _decimal_cents(cents: np.ndarray) -> pa.Array:
    """Exact DECIMAL(18,2) from integer cents (no float round trip)."""
    words = np.empty((len(cents), 2), dtype=np.int64)
    words[:, 0] = cents
    words[:, 1] = np.where(cents < 0, -1, 0)
    return pa.Array.from_buffers(
        pa.decimal128(18, 2), len(cents), [None, pa.py_buffer(words.tobytes())]
    )


def generate_transactions(config: GeneratorConfig, day: date) -> pa.Table:
    """All purchases with ``event_ts`` on ``day`` (UTC), ordered by time, in the raw schema."""
    pop = population(config)
    dn = _day_number(day)
    cols = _concat(pop, dn, [_background(pop, dn), *_incidents(pop, dn)])
    order = np.lexsort((cols["id"], cols["ts_us"]))
    cols = {k: v[order] for k, v in cols.items()}
    customer = pa.array(cols["customer"])
    merchants = pop.merchant_by_category
    pick = np.random.default_rng([config.seed, dn, 99]).random(len(order))
    merchant = np.empty(len(order), np.int64)
    for c, pool in enumerate(merchants):
        mask = cols["category"] == c
        merchant[mask] = pool[(pick[mask] * len(pool)).astype(np.int64)]
    device = cols["device"]
    return pa.table(
        {
            "transaction_id": _ids("tx_", cols["id"]),
            "customer_id": pc.take(pop.customer_ids, customer),
            "event_ts": pa.array(cols["ts_us"], pa.timestamp("us", tz="UTC")),
            "amount": _decimal_cents(cols["cents"]),
            "currency": pc.take(pa.array(CURRENCIES), pa.array(cols["country"])),
            "merchant_id": pc.binary_join_element_wise(
                "mer_", pc.utf8_lpad(pc.cast(pa.array(merchant), pa.string()), 6, "0"), ""
            ),
            "merchant_category": pc.take(pa.array(CATEGORIES), pa.array(cols["category"])),
            "channel": pc.take(pa.array(CHANNELS), pa.array(cols["channel"])),
            "device_id": pc.if_else(
                pa.array(device != 0), _ids("dev_", device), pa.scalar(None, pa.string())
            ),
            "country": pc.take(pa.array(COUNTRIES), pa.array(cols["country"])),
            "installments": pa.array(cols["installments"], pa.int16()),
            "card_hash": pc.take(pop.card_hashes, customer),
        },
        schema=TRANSACTIONS_SCHEMA,
    )


def generate_labels(config: GeneratorConfig, day: date) -> pa.Table:
    """Labels that become known on ``day`` (``label_ts`` that day, UTC), for earlier purchases."""
    pop = population(config)
    dn = _day_number(day)
    lo, hi = _day_start_us(dn), _day_start_us(dn + 1)
    ids, kinds, times = [], [], []
    for source_day in range(dn - MAX_LABEL_DELAY_DAYS, dn + 1):
        # Only the incident streams carry labels, and ids depend only on their own stream.
        cols = _concat(pop, source_day, _incidents(pop, source_day))
        label_ts = cols["ts_us"] + cols["label_delay_us"]
        hit = (cols["label"] > 0) & (label_ts >= lo) & (label_ts < hi)
        ids.append(cols["id"][hit])
        kinds.append(cols["label"][hit])
        times.append(label_ts[hit])
    all_ids, all_kinds, all_times = map(np.concatenate, (ids, kinds, times))
    order = np.lexsort((all_ids, all_times))
    return pa.table(
        {
            "transaction_id": _ids("tx_", all_ids[order]),
            "label": pc.take(pa.array(["", "fraud", "default"]), pa.array(all_kinds[order])),
            "label_ts": pa.array(all_times[order], pa.timestamp("us", tz="UTC")),
        },
        schema=LABELS_SCHEMA,
    )
