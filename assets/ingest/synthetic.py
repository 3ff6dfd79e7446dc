"""A deterministic, seeded generator of card and BNPL transactions with late-arriving labels.

Every day is generated on its own from ``(seed, day offset)``, the offset counted from the
configured start of data (``GeneratorConfig.start``): a daily partition is reproducible, the
same seed gives byte-identical data, and moving the start moves the whole world with it (a day
of the same offset is the same day, apart from the weekday rhythm). The customer population
(spend level, category tastes, devices, home country, rhythm, trips, new phones, incidents) is
drawn once from the seed, its dates as offsets from the start.

The world is meant to be as hard as real data (see docs/data.md, "The embedded generator and its
planted patterns"); no column names a pattern, they show only through behaviour:

* account takeover: bursts of spending by a fraudster; crude ones from a new device, often
  abroad, in resale-friendly categories; others imitate the victim (own device, home country,
  own tastes, spread over the day), more and more of them from a scheduled day;
* card testing: a handful of small digital purchases from a tester's device, spaced out over
  hours from a scheduled day; one tester works through many accounts;
* fraud rings: accounts opened by a ring, run from a few shared devices, that bust out together
  with a pool of stolen cards, each card on several accounts;
* compromised merchants: for a few weeks a merchant's purchases include fraud on its
  customers' cards, from their own devices;
* disputes: ordinary purchases charged back (friendly fraud, merchant errors), a few customers
  doing it again and again;
* BNPL stress: in the ~45 days before a default, a customer spends more, more erratically,
  increasingly on plans; others ramp up the same way and cure; some default with no warning
  at all;
* good customers who merely look unusual: resale-category enthusiasts, trips abroad, new
  phones, shopping sprees, a BNPL promotion from a scheduled day.

Labels arrive late (chargebacks over weeks, defaults over months; ``GeneratorConfig`` bounds),
and a label that has not arrived by a training cutoff makes its purchase look good.
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
# Log-multiplier of a purchase's size by category (travel and electronics cost more; digital
# goods are small, like card tests).
_CATEGORY_AMOUNT = np.array([0.0, -0.3, 0.1, 0.3, 0.5, 0.2, 1.2, -0.2, 1.0, -1.3, 0.4, 0.8])
_RESALE_CATEGORIES = np.array([8, 9, 10, 11])  # electronics, digital goods, gift cards, crypto
_RESTAURANTS, _RETAIL, _TRAVEL, _ENTERTAINMENT = 1, 3, 6, 7
_DIGITAL_GOODS, _GIFT_CARDS = 9, 10

COUNTRIES = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "CA", "MX", "BR", "IN", "JP")
CURRENCIES = ("USD", "GBP", "EUR", "EUR", "EUR", "EUR", "EUR", "CAD", "MXN", "BRL", "INR", "JPY")
_HOME_WEIGHTS = np.array([40, 10, 9, 8, 6, 5, 3, 6, 4, 4, 3, 2], dtype=float)
CHANNELS = ("online", "pos", "app")
_ONLINE, _POS, _APP = 0, 1, 2
_PLANS = np.array([3, 4, 6, 12])

# Random streams and ids are keyed by the day's offset from the start, made non-negative (days
# before the start are generated for labels' look-back) and kept within 20 bits of the id.
_DAY_KEY_BIAS = 1 << 19
_US_PER_DAY = 86_400_000_000
_BACKGROUND, _TAKEOVER, _DEFAULT_RAMP, _CARD_TEST, _DRIFT, _SPREE, _DISPUTE = 1, 2, 3, 4, 5, 6, 7
_RING, _COMPROMISE = 8, 9
_MERCHANT_PICK = 99
# The injected drift: amounts x e^0.6 (~1.8), a third of purchases moved to resale categories,
# and a third of card-present purchases moved online.
_DRIFT_AMOUNT, _DRIFT_RESALE, _DRIFT_ONLINE = 0.6, 0.35, 0.35
_FRAUD, _DEFAULT = 1, 2
_RAMP_DAYS = 45
# How visible a stress ramp is at most: a customer's ramp is this times a Beta(5, 2) draw (at the
# end of an average ramp, purchases ~4.3x the usual rate).
_RAMP_SCALE = 0.93
# Disputes: a share of active customers a day (~1 in 50,000), besides the serial disputers.
_DISPUTE_RATE = 2e-5
_NEVER = 1 << 40
# Device slots: a customer's own devices are 0-3 (slot 0 replaced by slot 16 after a new phone);
# sprees may use a new one; fraudsters use strangers' devices.
_NEW_PHONE_SLOT, _SPREE_SLOT, _CARD_TEST_SLOT, _TAKEOVER_SLOT = 16, 32, 62, 63

# Scheduled pattern shifts, in days from the start: fraudsters adapt on a date, not in reaction.
# Cross-customer fraud, visible only through devices, cards and merchants (the entities):
# a year brings a ring per 1,250 customers, 4-10 accounts each, opened 3-20 days before their
# bust-out of 5-12 days from 1-3 shared devices with 2-5 stolen cards, and a compromised
# merchant per 1,250 merchants, for 21 days; a card tester works through a fortnight's tests.
_RING_SIZE, _RING_DEVICES, _RING_CARDS = (4, 11), (1, 4), (2, 6)
_RING_WARMUP, _RING_DAYS, _COMPROMISE_DAYS, _TESTER_DAYS = (3, 21), (5, 13), 21, 14
_MIMIC_FROM = 56  # takeovers imitating their victim: 35% of them before, 50% from here
_MIMIC_SHARE = (0.35, 0.5)
_SLOW_TESTING_FROM = 63  # card testers space their tries over hours instead of one hour
_PLAN_PROMOTION_FROM = 35  # a BNPL promotion: everybody's plan uptake x1.1 from here
_PROMOTION_UPTAKE = 1.1


@dataclass(frozen=True)
class GeneratorConfig:
    seed: int = 7
    customers: int = 20_000
    merchants: int = 5_000
    # The first day of data (RISK_START_DATE): every dated event of the world (joins, churn,
    # incidents, scheduled pattern shifts) is an offset from it.
    start: date = date(2026, 1, 1)
    card_hash_key: bytes = b""
    # From this day on (None: never) everyday spending drifts: larger amounts, a shift towards
    # resale-friendly categories and online purchases (``make drift-demo``). Earlier days stay
    # byte-identical.
    drift_from: date | None = None
    # When labels arrive, in days after the purchase (shortest, longest; skewed towards the
    # short end): chargebacks over weeks, BNPL defaults over months (RISK_CHARGEBACK_DELAY_DAYS,
    # RISK_DEFAULT_DELAY_DAYS; the defaults are the same).
    chargeback_delay_days: tuple[int, int] = (2, 60)
    default_delay_days: tuple[int, int] = (30, 90)

    @property
    def max_label_delay_days(self) -> int:
        """Labels arrive at most this many days after their purchase."""
        return max(self.chargeback_delay_days[1], self.default_delay_days[1]) + 1


MAX_LABEL_DELAY_DAYS = GeneratorConfig().max_label_delay_days  # the default configuration's


def _offset(config: GeneratorConfig, day: date) -> int:
    return (day - config.start).days


def _rng(pop: Population, offset: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([pop.config.seed, offset + _DAY_KEY_BIAS, stream])


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


def _delays_us(rng: np.random.Generator, k: int, bounds: tuple[int, int]) -> np.ndarray:
    """Label delays within ``bounds`` days, skewed short: half in the first third of the range."""
    low, high = bounds
    days = low + (high - low) * rng.beta(1.4, 2.8, k)
    return np.minimum(days * _US_PER_DAY, high * _US_PER_DAY).astype(np.int64)


@dataclass(frozen=True)
class Population:
    """The customers, their habits and their dated events (day offsets from the start)."""

    config: GeneratorConfig
    join_day: np.ndarray
    churn_day: np.ndarray
    rate: np.ndarray  # purchases a day
    mu: np.ndarray
    sigma: np.ndarray
    category_cdf: np.ndarray  # (customers, categories)
    home: np.ndarray
    travel_p: np.ndarray  # share of purchases abroad outside trips
    n_devices: np.ndarray
    night_p: np.ndarray
    weekend_factor: np.ndarray
    online_p: np.ndarray
    app_share: np.ndarray
    bnpl_p: np.ndarray
    new_phone_day: np.ndarray  # from then on slot 0 is a new device
    trip_day: np.ndarray  # a trip abroad: first day (never: _NEVER), length, country
    trip_days: np.ndarray
    trip_country: np.ndarray
    takeover_day: np.ndarray  # -_NEVER: never
    takeover_days: np.ndarray
    mimic: np.ndarray  # the takeover imitates the victim's habits
    stress_day: np.ndarray  # the end of a BNPL stress ramp (-_NEVER: none) ...
    defaults: np.ndarray  # ... a default when True, a cure otherwise
    ramp: np.ndarray  # how visible the ramp is (0: a default without warning)
    disputers: np.ndarray  # indices of customers who dispute purchases again and again
    merchant_category: np.ndarray
    merchant_by_category: tuple[np.ndarray, ...]
    customer_ids: pa.Array
    card_hashes: pa.Array  # the customers' own cards, then the rings' stolen ones
    ring: np.ndarray  # each customer's ring, -1 for none
    ring_day: np.ndarray  # each ring's first day of bust-out ...
    ring_days: np.ndarray  # ... and how many days it lasts
    ring_devices: np.ndarray  # how many devices each ring shares
    ring_cards: np.ndarray  # each ring's stolen cards: (first index into card_hashes, count)
    compromised: np.ndarray  # merchants compromised for a while ...
    compromise_day: np.ndarray  # ... from this day on


@lru_cache(maxsize=4)
def population(config: GeneratorConfig) -> Population:
    rng = np.random.default_rng([config.seed, 0xC0FFEE])
    n = config.customers
    established = rng.random(n) < 0.7
    join_day = np.where(established, -rng.integers(1, 700, n), rng.integers(0, 365, n))
    churn_day = np.where(rng.random(n) < 0.08, rng.integers(0, 365, n), _NEVER)
    # Resale-friendly categories are a small slice of ordinary spending, except for the
    # enthusiasts (gamers, gadget and crypto fans) who look like fraud and are not.
    enthusiast = rng.random(n) < 0.08
    alphas = rng.gamma(0.35, 1.0, size=(n, len(CATEGORIES))) + 1e-9
    alphas[:, _RESALE_CATEGORIES] *= np.where(enthusiast, 3.0, 0.35)[:, None]
    cdf = np.cumsum(alphas / alphas.sum(axis=1, keepdims=True), axis=1)
    cdf[:, -1] = 1.0
    frequent_traveller = rng.random(n) < 0.12
    bnpl_user = rng.random(n) < 0.35
    # Newer customers default more often (visible through their history, not a purchase).
    defaulter = bnpl_user & (rng.random(n) < np.where(established, 0.08, 0.18))
    curer = bnpl_user & ~defaulter & (rng.random(n) < 0.04)
    stress_day = np.where(defaulter | curer, rng.integers(20, 400, n), -_NEVER)
    # Some defaults (10%) come without warning; the other ramps vary in strength.
    ramp = _RAMP_SCALE * rng.beta(5.0, 2.0, n) * (rng.random(n) > np.where(defaulter, 0.1, 0.0))
    takeover = (rng.random(n) < 0.013) & established
    takeover_day = np.where(takeover, rng.integers(-20, 365, n), -_NEVER)
    mimic_share = np.where(takeover_day >= _MIMIC_FROM, _MIMIC_SHARE[1], _MIMIC_SHARE[0])
    has_trip = rng.random(n) < 0.35
    merchant_category = rng.choice(len(CATEGORIES), size=config.merchants)
    merchant_category[: len(CATEGORIES)] = np.arange(len(CATEGORIES))  # every category has one
    pans = _luhn_pans(n, rng)
    home = rng.choice(len(COUNTRIES), size=n, p=_HOME_WEIGHTS / _HOME_WEIGHTS.sum())
    key = config.card_hash_key or settings.load().hash_key()
    rings = _rings(config, join_day, churn_day, takeover_day, stress_day)
    stolen = _luhn_pans(rings["cards"], np.random.default_rng([config.seed, 0xCA4D]))
    return Population(
        config=config,
        join_day=join_day,
        churn_day=churn_day,
        rate=rng.gamma(1.6, 0.16, n),
        mu=rng.normal(3.4, 0.7, n),
        sigma=rng.uniform(0.25, 0.8, n),
        category_cdf=cdf.astype(np.float32),
        home=home,
        travel_p=np.where(frequent_traveller, rng.beta(2.0, 8.0, n), 0.01),
        n_devices=np.minimum(1 + rng.poisson(0.6, n), 4),
        night_p=rng.beta(1.0, 14.0, n),
        weekend_factor=rng.lognormal(0.0, 0.35, n),
        online_p=np.where(enthusiast, rng.beta(5.0, 2.0, n), rng.beta(2.0, 3.0, n)),
        app_share=rng.beta(1.5, 3.0, n),
        bnpl_p=np.where(bnpl_user, rng.beta(2.0, 6.0, n), 0.0),
        new_phone_day=np.where(rng.random(n) < 0.35, rng.integers(-200, 365, n), _NEVER),
        trip_day=np.where(has_trip, rng.integers(-30, 365, n), _NEVER),
        trip_days=rng.integers(3, 15, n),
        trip_country=(home + rng.integers(1, len(COUNTRIES), n)) % len(COUNTRIES),
        takeover_day=takeover_day,
        takeover_days=rng.integers(2, 6, n),
        mimic=rng.random(n) < mimic_share,
        stress_day=stress_day,
        defaults=defaulter,
        ramp=ramp,
        disputers=np.flatnonzero(rng.random(n) < 0.01),
        merchant_category=merchant_category,
        merchant_by_category=tuple(
            np.flatnonzero(merchant_category == c) for c in range(len(CATEGORIES))
        ),
        customer_ids=pc.binary_join_element_wise(
            "cus_", pc.utf8_lpad(pc.cast(pa.array(np.arange(n)), pa.string()), 8, "0"), ""
        ),
        card_hashes=pa.array(card_hash(pans + stolen, key)),
        ring=rings["ring"],
        ring_day=rings["day"],
        ring_days=rings["days"],
        ring_devices=rings["devices"],
        ring_cards=rings["card_sets"],
        compromised=rings["compromised"],
        compromise_day=rings["compromise_day"],
    )


def _spread(rng: np.random.Generator, count: int, first: int, end: int) -> np.ndarray:
    """``count`` days in [first, end), one at random in each of ``count`` equal stretches (or
    evenly, when there are more than days): any few months of the year see some."""
    step = (end - first) // count
    if step == 0:  # more than one a day (a large world): each day its share
        return first + np.arange(count) * (end - first) // count
    return first + np.arange(count) * step + rng.integers(0, step, count)


def _rings(
    config: GeneratorConfig,
    join_day: np.ndarray,
    churn_day: np.ndarray,
    takeover_day: np.ndarray,
    stress_day: np.ndarray,
) -> dict:
    """The rings and compromised merchants, from a stream of their own (the rest of the
    population is drawn as before). Ring accounts are customers who join during the year: their
    join day moves to a few days before their ring's bust-out, and they leave when it ends;
    they take no part in takeovers or BNPL stress. ``join_day`` and ``churn_day`` are updated
    in place."""
    rng = np.random.default_rng([config.seed, 0x121A6])
    n = len(join_day)
    ring = np.full(n, -1)
    count = max(2, n // 1_250)
    day = _spread(rng, count, 7, 365)
    days = rng.integers(*_RING_DAYS, count)
    eligible = np.flatnonzero((join_day >= 0) & (takeover_day < 0) & (stress_day < 0))
    sizes = rng.integers(*_RING_SIZE, count)
    members = rng.permutation(eligible)[: sizes.sum()]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    devices, card_sets, cards = [], [], n
    for r in range(count):
        accounts = members[starts[r] : starts[r] + sizes[r]]
        ring[accounts] = r
        join_day[accounts] = day[r] - rng.integers(*_RING_WARMUP, len(accounts))
        churn_day[accounts] = day[r] + days[r]
        devices.append(rng.integers(*_RING_DEVICES))
        k = rng.integers(*_RING_CARDS)
        card_sets.append((cards, k))
        cards += k
    compromised = rng.choice(config.merchants, max(2, config.merchants // 1_250), replace=False)
    compromise_day = _spread(rng, len(compromised), 14, 365)
    return {
        "ring": ring,
        "day": day,
        "days": days,
        "devices": np.array(devices),
        "card_sets": np.array(card_sets).reshape(-1, 2),
        "cards": cards - n,
        "compromised": compromised,
        "compromise_day": compromise_day,
    }


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
    card: np.ndarray  # index into card_hashes: the customer's own card unless stolen
    merchant: np.ndarray  # a merchant index, or -1: drawn from the category's merchants


def _day_start_us(pop: Population, offset: int) -> int:
    day = pop.config.start + timedelta(days=offset)
    return int(datetime.combine(day, datetime.min.time(), UTC).timestamp()) * 1_000_000


def _device_key(pop: Population, customer: np.ndarray, slot: np.ndarray) -> np.ndarray:
    salt = np.uint64(pop.config.seed) << np.uint64(40)
    key = customer.astype(np.uint64) * np.uint64(64) + slot.astype(np.uint64)
    return _splitmix64(salt ^ key) | np.uint64(1)


def _own_device(pop: Population, offset: int, customer: np.ndarray, slot: np.ndarray) -> np.ndarray:
    """One of the customer's own devices; slot 0 is the phone, replaced on its new-phone day.
    A ring's accounts are all run from the ring's devices."""
    slot = slot.astype(np.uint64)
    replaced = (slot == 0) & (offset >= pop.new_phone_day[customer])
    device = _device_key(pop, customer, np.where(replaced, np.uint64(_NEW_PHONE_SLOT), slot))
    member = pop.ring[customer] >= 0
    if member.any():
        device[member] = _ring_device(
            pop, pop.ring[customer[member]], customer[member] + slot[member]
        )
    return device


def _ring_device(pop: Population, ring: np.ndarray, pick: np.ndarray) -> np.ndarray:
    """One of each ring's shared devices (keyed beyond every customer's: a ring is device
    owner ``customers + ring``)."""
    slot = pick.astype(np.uint64) % pop.ring_devices[ring].astype(np.uint64)
    return _device_key(pop, len(pop.ring) + ring, slot)


def _on_trip(pop: Population, offset: int, customer: np.ndarray) -> np.ndarray:
    since = offset - pop.trip_day[customer]
    return (since >= 0) & (since < pop.trip_days[customer])


def _plan_uptake(pop: Population, offset: int, customer: np.ndarray) -> np.ndarray:
    promoted = _PROMOTION_UPTAKE if offset >= _PLAN_PROMOTION_FROM else 1.0
    return np.minimum(pop.bnpl_p[customer] * promoted, 0.9)


def _purchases(
    pop: Population,
    rng: np.random.Generator,
    offset: int,
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
    slot = np.floor(rng.random(k) * pop.n_devices[customer])
    device = _own_device(pop, offset, customer, slot)
    # Card-present purchases mostly carry no device (a tap with a wallet phone does).
    device[(channel == _POS) & (rng.random(k) < 0.8)] = 0
    abroad = rng.random(k) < pop.travel_p[customer]
    country = np.where(
        abroad,
        (pop.home[customer] + rng.integers(1, len(COUNTRIES), k)) % len(COUNTRIES),
        pop.home[customer],
    )
    # On a trip most purchases are made in the trip's country.
    away = _on_trip(pop, offset, customer) & (rng.random(k) < 0.85)
    country = np.where(away, pop.trip_country[customer], country)
    plan = (rng.random(k) < _plan_uptake(pop, offset, customer)) & (cents >= 3_000)
    installments = np.where(plan, rng.choice(_PLANS, k), 1)
    ts_us = _day_start_us(pop, offset) + (hours * 3_600_000_000).astype(np.int64)
    return _Batch(
        stream=stream,
        customer=customer,
        ts_us=ts_us,
        cents=cents,
        category=category,
        channel=channel,
        device=device,
        country=country,
        installments=installments,
        label=np.zeros(k, np.int8),
        label_delay_us=np.zeros(k, np.int64),
        card=customer.astype(np.int64),
        merchant=np.full(k, -1, np.int64),
    )


def _daytime_hours(pop: Population, rng: np.random.Generator, customer: np.ndarray) -> np.ndarray:
    k = len(customer)
    night = rng.random(k) < pop.night_p[customer]
    day_hours = np.clip(rng.normal(14.0, 3.8, k), 6.0, 23.999999)
    return np.where(night, rng.uniform(0.0, 6.0, k), day_hours)


def _active(pop: Population, offset: int) -> np.ndarray:
    gone = pop.defaults & (offset >= pop.stress_day)
    return (pop.join_day <= offset) & (offset < pop.churn_day) & ~gone


def _ramping(pop: Population, offset: int) -> np.ndarray:
    """Customers in the days before their default or cure (the ramp stream has them)."""
    left = pop.stress_day - offset
    return (left > 0) & (left <= _RAMP_DAYS)


def _sample_active(pop: Population, rng: np.random.Generator, offset: int, p: float) -> np.ndarray:
    """About ``p`` of the active customers, drawn as indices: O(drawn), not O(customers)."""
    n = len(pop.rate)
    drawn = np.unique(rng.integers(0, n, rng.binomial(n, p)))
    return drawn[_active(pop, offset)[drawn]]


def _background(pop: Population, offset: int) -> _Batch:
    rng = _rng(pop, offset, _BACKGROUND)
    weekend = (pop.config.start + timedelta(days=offset)).weekday() >= 5
    customers = np.arange(len(pop.rate))
    trip = np.where(_on_trip(pop, offset, customers), 1.3, 1.0)  # holidays spend more
    everyday = _active(pop, offset) & ~_ramping(pop, offset)
    lam = pop.rate * np.where(weekend, pop.weekend_factor, 1.0) * trip * everyday
    customer = np.repeat(customers, rng.poisson(lam))
    hours = _daytime_hours(pop, rng, customer)
    drift = pop.config.drift_from
    if drift is None or offset < _offset(pop.config, drift):
        return _purchases(pop, rng, offset, _BACKGROUND, customer, hours=hours)
    # Drifted: the same draws as an ordinary day (categories first, as _purchases draws them),
    # then the shifts from a stream of their own.
    shift = _rng(pop, offset, _DRIFT)
    k = len(customer)
    category = (rng.random((k, 1), dtype=np.float32) > pop.category_cdf[customer]).sum(axis=1)
    moved = shift.random(k) < _DRIFT_RESALE
    category[moved] = shift.choice(_RESALE_CATEGORIES, int(moved.sum()))
    batch = _purchases(
        pop,
        rng,
        offset,
        _BACKGROUND,
        customer,
        hours=hours,
        mu_shift=_DRIFT_AMOUNT,
        category=category,
    )
    online = (batch.channel == _POS) & (shift.random(k) < _DRIFT_ONLINE)
    batch.channel[online] = _ONLINE
    batch.device[online] = _own_device(pop, offset, customer[online], np.zeros(online.sum()))
    return batch


def _spree(pop: Population, offset: int) -> _Batch:
    """Good customers' shopping sprees: bursts like a takeover's, on their own cards."""
    rng = _rng(pop, offset, _SPREE)
    shoppers = _sample_active(pop, rng, offset, 1.2e-3)
    counts = rng.integers(3, 8, len(shoppers))
    customer = np.repeat(shoppers, counts)
    k = len(customer)
    start = np.repeat(np.clip(rng.normal(15.0, 3.5, len(shoppers)), 7.0, 21.5), counts)
    category = np.where(
        rng.random(k) < 0.5,
        rng.choice(_RESALE_CATEGORIES, k),
        rng.choice([_RETAIL, _ENTERTAINMENT, _RESTAURANTS], k),
    )
    batch = _purchases(
        pop,
        rng,
        offset,
        _SPREE,
        customer,
        hours=start + rng.uniform(0.0, 2.0, k),
        mu_shift=0.6,
        category=category,
    )
    batch.channel[:] = np.where(rng.random(k) < 0.7, _ONLINE, _APP)
    # Some sprees start on a device bought that day.
    new = np.repeat(rng.random(len(shoppers)) < 0.3, counts)
    own = _own_device(pop, offset, customer, np.zeros(k))
    batch.device[:] = np.where(new, _device_key(pop, customer, np.full(k, _SPREE_SLOT)), own)
    return batch


def _takeover(pop: Population, offset: int) -> _Batch:
    """Account takeover: crude bursts from a new device, or spending that imitates the victim."""
    rng = _rng(pop, offset, _TAKEOVER)
    since = offset - pop.takeover_day
    mimic_days = pop.takeover_days + 3  # imitators go slower, and for longer
    length = np.where(pop.mimic, mimic_days, pop.takeover_days)
    victims = np.flatnonzero((since >= 0) & (since < length))
    mimic = pop.mimic[victims]
    probing = (since[victims] == 0) & ~mimic
    counts = np.where(
        probing,
        rng.integers(1, 3, len(victims)),
        np.where(mimic, rng.integers(1, 5, len(victims)), rng.integers(2, 7, len(victims))),
    )
    customer = np.repeat(victims, counts)
    probe, imitating = np.repeat(probing, counts), np.repeat(mimic, counts)
    k = len(customer)
    # A crude burst runs inside a couple of hours at any time of day; an imitator keeps to the
    # victim's own hours and tastes.
    start = np.repeat(rng.uniform(0.0, 22.0, len(victims)), counts)
    burst_hours = start + rng.uniform(0.0, 2.0, k)
    hours = np.where(imitating, _daytime_hours(pop, rng, customer), burst_hours)
    own_taste = (rng.random((k, 1), dtype=np.float32) > pop.category_cdf[customer]).sum(axis=1)
    resale = rng.random(k) < np.where(imitating, 0.3, 0.65)
    category = np.where(resale, rng.choice(_RESALE_CATEGORIES, k), own_taste)
    batch = _purchases(
        pop,
        rng,
        offset,
        _TAKEOVER,
        customer,
        hours=hours,
        mu_shift=np.where(probe, -1.5, np.where(imitating, 0.5, 0.7)),
        sigma_shift=0.3,
        category=category,
    )
    # Crude: online or in-app, a fifth with a cloned card at a till abroad; an imitator keeps
    # the victim's own channels (a wallet tap with the stolen phone at a till).
    u = rng.random(k)
    crude_channel = np.where(u < 0.6, _ONLINE, np.where(u < 0.8, _APP, _POS))
    batch.channel[:] = np.where(imitating, batch.channel, crude_channel)
    stranger = _device_key(pop, customer, np.full(k, _TAKEOVER_SLOT))
    hijacked = _own_device(pop, offset, customer, np.zeros(k))  # the victim's own phone
    batch.device[:] = np.where(imitating, hijacked, stranger)
    cloned = ~imitating & (batch.channel == _POS)
    batch.device[cloned] = 0
    abroad = (np.repeat(rng.random(len(victims)) < 0.5, counts) | cloned) & ~imitating
    foreign = (pop.home[customer] + 1 + customer % (len(COUNTRIES) - 1)) % len(COUNTRIES)
    batch.country[:] = np.where(abroad, foreign, batch.country)
    batch.installments[:] = 1
    batch.label[:] = _FRAUD
    batch.label_delay_us[:] = _delays_us(rng, k, pop.config.chargeback_delay_days)
    return batch


def _default_ramp(pop: Population, offset: int) -> _Batch:
    """The 45 days before a default or a cure: all the customer's purchases, rising and erratic
    and more and more on plans as the day nears (as strongly as the customer's ``ramp``); the
    plan purchases of those who default are labelled."""
    rng = _rng(pop, offset, _DEFAULT_RAMP)
    ramping = np.flatnonzero(_ramping(pop, offset))
    ramping = ramping[_active(pop, offset)[ramping]]
    progress = 1.0 - (pop.stress_day[ramping] - offset) / _RAMP_DAYS
    strength = pop.ramp[ramping] * np.sqrt(progress)  # visible early, strongest at the end
    counts = rng.poisson(pop.rate[ramping] * (1.0 + 5.0 * strength))
    customer = np.repeat(ramping, counts)
    strength = np.repeat(strength, counts)
    batch = _purchases(
        pop,
        rng,
        offset,
        _DEFAULT_RAMP,
        customer,
        hours=_daytime_hours(pop, rng, customer),
        mu_shift=0.25 * strength,
        sigma_shift=0.5 * strength,
    )
    k = len(customer)
    uptake = _plan_uptake(pop, offset, customer)
    # Plans from $30, as for everybody (no amount gives a ramp away).
    on_plan = (rng.random(k) < uptake + (0.95 - uptake) * strength) & (batch.cents >= 3_000)
    batch.installments[:] = np.where(on_plan, rng.choice(_PLANS, k), batch.installments)
    defaulted = pop.defaults[customer] & (batch.installments > 1)
    batch.label[:] = np.where(defaulted, _DEFAULT, 0)
    batch.label_delay_us[:] = _delays_us(rng, k, pop.config.default_delay_days)
    return batch


def _card_test(pop: Population, offset: int) -> _Batch:
    """Card testing: a few small digital purchases from a tester's device; a tester works
    through the tests of a fortnight (one per 40,000 customers), on many accounts."""
    rng = _rng(pop, offset, _CARD_TEST)
    tested = _sample_active(pop, rng, offset, 3e-5)
    counts = rng.integers(2, 6, len(tested))
    customer = np.repeat(tested, counts)
    k = len(customer)
    start = np.repeat(rng.uniform(0.0, 18.0, len(tested)), counts)
    spread = 6.0 if offset >= _SLOW_TESTING_FROM else 0.9  # hours between first and last try
    category = np.where(rng.random(k) < 0.7, _DIGITAL_GOODS, _GIFT_CARDS)
    batch = _purchases(
        pop,
        rng,
        offset,
        _CARD_TEST,
        customer,
        hours=start + rng.uniform(0.0, spread, k),
        category=category,
    )
    batch.cents[:] = np.exp(rng.normal(6.2, 0.8, k)).astype(np.int64) + 50  # ~$5, $0.5-$50
    batch.channel[:] = _ONLINE
    testers = max(1, len(pop.rate) // 40_000)
    tester = np.repeat(rng.integers(0, testers, len(tested)), counts)
    # Device owners beyond the customers and the rings: one per tester and fortnight
    owner = len(pop.rate) + len(pop.ring_day) + (offset // _TESTER_DAYS + 1_000) * testers + tester
    batch.device[:] = _device_key(pop, owner, np.full(k, _CARD_TEST_SLOT))
    batch.installments[:] = 1
    batch.label[:] = _FRAUD
    batch.label_delay_us[:] = _delays_us(rng, k, pop.config.chargeback_delay_days)
    return batch


def _ring_bust_out(pop: Population, offset: int) -> _Batch:
    """Fraud rings: each account of a ring in its bust-out buys ~0.8 times a day, online or in
    the app, half in resale-friendly categories, from the ring's devices, with a stolen card of
    the ring's (each card on several of its accounts)."""
    rng = _rng(pop, offset, _RING)
    since = offset - pop.ring_day
    busy = np.flatnonzero((since >= 0) & (since < pop.ring_days))
    members = np.flatnonzero(np.isin(pop.ring, busy)) if len(busy) else busy
    counts = rng.poisson(0.8, len(members))
    customer = np.repeat(members, counts)
    k = len(customer)
    own_taste = (rng.random((k, 1), dtype=np.float32) > pop.category_cdf[customer]).sum(axis=1)
    resale = rng.random(k) < 0.5
    batch = _purchases(
        pop,
        rng,
        offset,
        _RING,
        customer,
        hours=_daytime_hours(pop, rng, customer),
        mu_shift=0.4,
        category=np.where(resale, rng.choice(_RESALE_CATEGORIES, k), own_taste),
    )
    ring = pop.ring[customer]
    batch.channel[:] = np.where(rng.random(k) < 0.7, _ONLINE, _APP)
    batch.device[:] = _ring_device(pop, ring, rng.integers(0, 1 << 20, k))
    first, count = pop.ring_cards[ring, 0], pop.ring_cards[ring, 1]
    batch.card[:] = first + rng.integers(0, 1 << 20, k) % count
    batch.installments[:] = 1
    batch.label[:] = _FRAUD
    batch.label_delay_us[:] = _delays_us(rng, k, pop.config.chargeback_delay_days)
    return batch


def _compromise(pop: Population, offset: int) -> _Batch:
    """Compromised merchants: for three weeks, purchases at the merchant on ordinary
    customers' stolen card details (a breached checkout): the merchant's category, the
    customer's own device and country, ~1 in 5,000 customers a day per merchant."""
    rng = _rng(pop, offset, _COMPROMISE)
    since = offset - pop.compromise_day
    live = pop.compromised[(since >= 0) & (since < _COMPROMISE_DAYS)]
    n = len(pop.rate)
    merchant = np.repeat(live, rng.poisson(n * 2e-4, len(live)))
    customer = rng.integers(0, n, len(merchant))
    active = _active(pop, offset)[customer]
    merchant, customer = merchant[active], customer[active]
    batch = _purchases(
        pop,
        rng,
        offset,
        _COMPROMISE,
        customer,
        hours=_daytime_hours(pop, rng, customer),
        mu_shift=0.3,
        category=pop.merchant_category[merchant],
    )
    batch.merchant[:] = merchant
    batch.installments[:] = 1
    batch.label[:] = _FRAUD
    batch.label_delay_us[:] = _delays_us(rng, len(customer), pop.config.chargeback_delay_days)
    return batch


def _dispute(pop: Population, offset: int) -> _Batch:
    """Label noise: ordinary purchases charged back as fraud (friendly fraud, merchant errors),
    mostly card-not-present; a few customers dispute again and again."""
    rng = _rng(pop, offset, _DISPUTE)
    serial = pop.disputers[rng.random(len(pop.disputers)) < 2e-3]
    serial = serial[_active(pop, offset)[serial]]
    customer = np.concatenate([_sample_active(pop, rng, offset, _DISPUTE_RATE), serial])
    k = len(customer)
    batch = _purchases(
        pop, rng, offset, _DISPUTE, customer, hours=_daytime_hours(pop, rng, customer)
    )
    batch.channel[:] = np.where(rng.random(k) < 0.6, _ONLINE, batch.channel)
    batch.installments[:] = 1
    batch.label[:] = _FRAUD
    batch.label_delay_us[:] = _delays_us(rng, k, pop.config.chargeback_delay_days)
    return batch


def _incidents(pop: Population, offset: int) -> list[_Batch]:
    """The labelled streams (labels replay only these)."""
    return [
        _takeover(pop, offset),
        _default_ramp(pop, offset),
        _card_test(pop, offset),
        _dispute(pop, offset),
        _ring_bust_out(pop, offset),
        _compromise(pop, offset),
    ]


def _transaction_ids(pop: Population, offset: int, batch: _Batch) -> np.ndarray:
    """Opaque, unique ids: a bijective mix of (seed, day offset, stream, sequence)."""
    seq = np.arange(len(batch.customer), dtype=np.uint64)
    raw = (
        (np.uint64(pop.config.seed & 0xFF) << np.uint64(56))
        | (np.uint64(offset + _DAY_KEY_BIAS) << np.uint64(36))
        | (np.uint64(batch.stream) << np.uint64(32))
        | seq
    )
    return _splitmix64(raw)


def _concat(pop: Population, offset: int, batches: list[_Batch]) -> dict[str, np.ndarray]:
    columns = {
        name: np.concatenate([getattr(b, name) for b in batches])
        for name in _Batch.__dataclass_fields__
        if name != "stream"
    }
    columns["id"] = np.concatenate([_transaction_ids(pop, offset, b) for b in batches])
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
    dn = _offset(config, day)
    streams = [_background(pop, dn), _spree(pop, dn), *_incidents(pop, dn)]
    cols = _concat(pop, dn, streams)
    order = np.lexsort((cols["id"], cols["ts_us"]))
    cols = {k: v[order] for k, v in cols.items()}
    customer = pa.array(cols["customer"])
    merchants = pop.merchant_by_category
    pick = _rng(pop, dn, _MERCHANT_PICK).random(len(order))
    merchant = cols["merchant"].copy()
    for c, pool in enumerate(merchants):
        mask = (cols["category"] == c) & (merchant < 0)
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
            "card_hash": pc.take(pop.card_hashes, pa.array(cols["card"])),
        },
        schema=TRANSACTIONS_SCHEMA,
    )


@lru_cache(maxsize=128)
def _labelled(config: GeneratorConfig, offset: int) -> dict[str, np.ndarray]:
    """A day's incident streams, the only ones carrying labels (ids depend only on their own
    stream); cached, as consecutive label days replay the same purchase days."""
    return _concat(population(config), offset, _incidents(population(config), offset))


def generate_labels(config: GeneratorConfig, day: date) -> pa.Table:
    """Labels that become known on ``day`` (``label_ts`` that day, UTC), for earlier purchases."""
    pop = population(config)
    dn = _offset(config, day)
    lo, hi = _day_start_us(pop, dn), _day_start_us(pop, dn + 1)
    ids, kinds, times = [], [], []
    for source_day in range(dn - config.max_label_delay_days, dn + 1):
        cols = _labelled(config, source_day)
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
