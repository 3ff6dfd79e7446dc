"""The scoring service: FastAPI over ``serving/scorer.py``, with its two hot endpoints in front.

The champions are loaded from MLflow by alias and the Redis client is opened in the lifespan
handler; both live on ``app.state``. ``POST /score`` and ``POST /score/batch`` are served by
``HotPath``, a plain ASGI layer in front of FastAPI: FastAPI's ten middleware, routing and
dependency layers cost ~0.3 ms a request here, as much as the scoring itself. Their bodies are
still the pydantic schemas (validated by pydantic's JSON parser, documented in the OpenAPI
spec); every other endpoint is ordinary FastAPI. A single score (~0.3 ms of CPU) runs on the
event loop, cheaper than a thread hop; a batch runs in the threadpool. Validation errors never
echo the input back (it may hold what the caller should not have sent), and there is no access
log (paths carry customer ids).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import logging
import select
import signal
import time
from collections.abc import AsyncIterator, Callable, Generator
from dataclasses import dataclass
from typing import Annotated, ClassVar

import orjson
import redis
from fastapi import Depends, FastAPI, HTTPException, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from fastapi.security import APIKeyHeader
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from pydantic.json_schema import models_json_schema
from starlette.concurrency import run_in_threadpool

from riskcore import settings
from riskcore.codec import InvalidValue
from riskcore.online_store import OnlineRecord, OnlineStoreError, safe_url
from riskcore.redis_transport import InFlight
from serving import metrics
from serving.config import ServingConfig
from serving.inference_log import InferenceLog
from serving.schemas import (
    BatchRequest,
    BatchResponse,
    Events,
    EventsRecorded,
    FeaturesResponse,
    ScoreRequest,
    ScoreResponse,
)
from serving.scorer import ModelSet, Scorer

log = logging.getLogger("serving")
API_KEY_HEADER = "X-API-Key"
_api_key = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)


def key_is_valid(given: bytes | str | None, keys: tuple[str, ...]) -> bool:
    """Constant-time comparison with every configured key, as bytes: a header is bytes, and
    ``hmac.compare_digest`` raises on a str that is not ASCII (a 500, not a 401)."""
    if not given:
        return False
    if isinstance(given, str):  # as the ASGI server decoded the header: latin-1, 1:1 to bytes
        given = given.encode("latin-1", errors="replace")
    return any(hmac.compare_digest(given, key.encode()) for key in keys)


def _require_key(request: Request, key: Annotated[str | None, Security(_api_key)]) -> None:
    if not key_is_valid(key, request.app.state.config.api_keys):
        raise HTTPException(401, f"missing or invalid {API_KEY_HEADER}")


Authorized = Annotated[None, Depends(_require_key)]


def _scorer(request: Request) -> Scorer:
    return request.app.state.scorer


ScorerDep = Annotated[Scorer, Depends(_scorer)]


def _json(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


def validation_errors(exc: ValidationError) -> list[dict]:
    """pydantic's errors for a request body, without the input values."""
    return [
        {"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_input=False, include_url=False, include_context=False)
    ]


async def reload_models(app: FastAPI) -> dict:
    """Load the models the aliases name now (in a thread: requests go on meanwhile), then swap
    them in with one assignment; a failed load leaves the running models in place."""
    async with app.state.reload_lock:
        scorer: Scorer = app.state.scorer
        before = {t: m.label for t, m in scorer.models.champions.items()}
        models = await run_in_threadpool(ModelSet.load, app.state.config)
        scorer.models = models
        models.publish()
        after = {t: m.label for t, m in models.champions.items()}
        shadows = {t: m.label for t, m in models.shadows.items()}
        canaries = models.canary_labels()
        log.info(
            "models reloaded: %s -> %s (canary %s, shadow %s)", before, after, canaries, shadows
        )
        return {"before": before, "after": after, "canary": canaries, "shadow": shadows}


async def watch_aliases(app: FastAPI, every_s: float) -> None:
    """Reload when a registry alias moves (a promotion, or monitoring's automatic rollback)."""
    while True:
        await asyncio.sleep(every_s)
        try:
            moved = await run_in_threadpool(app.state.scorer.models.moved, app.state.config)
            if moved:
                log.info("registry aliases moved (%s): reloading", ", ".join(moved))
                await reload_models(app)
        except Exception:  # the registry or the new version is unreadable: keep serving
            log.exception("alias check failed; models unchanged")


def create_app(config: ServingConfig | None = None) -> HotPath:
    """The ASGI application uvicorn serves (``HotPath`` over the FastAPI app)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cfg = config or ServingConfig.from_environment()
        cfg.check()
        if not cfg.redis_url:
            raise RuntimeError("REDIS_URL is not set (`make serve` sets the embedded store's)")
        inference_log = None
        if cfg.inference_log_uri:
            inference_log = InferenceLog(
                cfg.inference_log_uri,
                flush_s=cfg.log_flush_s,
                commit_s=cfg.log_commit_s,
                max_pending=cfg.log_max_pending,
            )
        # Loading from MLflow takes seconds: off the event loop.
        scorer = await run_in_threadpool(Scorer.open, cfg, inference_log=inference_log)
        models = scorer.models
        if inference_log is not None:
            inference_log.shadow = scorer.shadow_scores
            metrics.LOG_PENDING.set_function(lambda: inference_log.pending)  # read at scrape
            inference_log.start()
        app.state.config, app.state.scorer = cfg, scorer
        # A full collection walks every object startup made (~460k: models, libraries; ~300 ms
        # here, a stall of every request in flight). Frozen, it walks only what came since. A
        # reload is not frozen: it adds ~400 objects, and the ones it replaces can then be
        # collected (the startup set's few cyclic ones stay, once).
        gc.collect()
        gc.freeze()
        app.state.reload_lock = asyncio.Lock()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(
                signal.SIGHUP, lambda: asyncio.ensure_future(reload_models(app))
            )
        watcher = (
            asyncio.create_task(watch_aliases(app, cfg.alias_poll_s)) if cfg.alias_poll_s else None
        )
        log.info(
            "serving %s (canary %s, shadow %s), store %s, inference log %s",
            {t: m.label for t, m in models.champions.items()},
            models.canary_labels() or "none",
            {t: m.label for t, m in models.shadows.items()} or "off",
            safe_url(cfg.redis_url),
            cfg.inference_log_uri or "off",
        )
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGHUP)
            if inference_log is not None:
                await run_in_threadpool(inference_log.close)
            scorer.transport.close()
            scorer.events.transport.close()
            scorer.client.close()
            scorer.events.client.close()

    # Swagger UI and ReDoc load their scripts from a CDN: served in dev mode only (the
    # OpenAPI document itself is always at /openapi.json).
    dev_mode = config.dev_mode if config is not None else settings.load().serving_dev
    app = FastAPI(
        title="Risk scoring",
        version="1.0",
        summary="Fraud and BNPL default scores from online behavioural features.",
        lifespan=lifespan,
        docs_url="/docs" if dev_mode else None,
        redoc_url="/redoc" if dev_mode else None,
    )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return _json({"detail": errors}, 422)

    @app.get("/features/{customer_id}", response_model=FeaturesResponse)
    def features(customer_id: str, scorer: ScorerDep, _: Authorized) -> Response:
        """The customer's online record, as the fraud champion reads it (for debugging)."""
        version = scorer.models.champions["fraud"].bundle.feature_set_version
        try:
            found = scorer.store(version).get(customer_id)
        except OnlineStoreError as exc:  # the detail names no host: logged, not returned
            log.warning("/features: online store unavailable: %s", exc)
            raise HTTPException(503, "store unavailable") from exc
        if not isinstance(found, OnlineRecord):
            raise HTTPException(404, f"no record for this customer ({found.reason})")
        return _json(
            {
                "customer_id": customer_id,
                "feature_set_version": version,
                "as_of": found.as_of,
                "features": found.feature_dict(),
                "context": {
                    k: list(v) if isinstance(v, tuple) else v for k, v in found.context.items()
                },
            }
        )

    @app.get("/health", summary="Liveness")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready", summary="Models loaded and the online store serving")
    def ready(scorer: ScorerDep) -> Response:
        problems, store = [], {}
        for version in scorer.models.versions:
            try:
                generation = scorer.store(version).serving_generation(fresh=True)
            except OnlineStoreError as exc:
                log.warning("/ready: online store unavailable for %s: %s", version, exc)
                problems.append(f"{version}: store unavailable")
                continue
            if generation is None or generation.expired:
                problems.append(f"{version}: no generation serving")
            else:
                store[version] = {"generation": generation.id, "as_of": generation.as_of}
        body = {
            "ready": not problems,
            "problems": problems,
            "store": store,
            "models": {t: m.label for t, m in scorer.models.champions.items()},
            "canary": scorer.models.canary_labels(),
            "shadow": {t: m.label for t, m in scorer.models.shadows.items()},
        }
        return _json(body, 200 if not problems else 503)

    @app.get("/metrics", summary="Prometheus metrics (API key unless RISK_SERVING_METRICS_PUBLIC)")
    async def prometheus(request: Request, key: Annotated[str | None, Security(_api_key)]):
        if not request.app.state.config.metrics_public:
            _require_key(request, key)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/admin/reload", summary="Reload the models the registry aliases name now")
    async def reload(request: Request, _: Authorized) -> dict:
        try:
            return await reload_models(request.app)
        except Exception as exc:  # the running models stay
            log.exception("reload failed, models unchanged")
            raise HTTPException(503, "reload failed, models unchanged (see the log)") from exc

    def openapi() -> dict:
        """FastAPI's schema plus the hot endpoints, whose bodies ``HotPath`` parses."""
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            _, defs = models_json_schema(
                [(m, "validation") for m in (ScoreRequest, BatchRequest, Events)]
                + [(m, "serialization") for m in (ScoreResponse, BatchResponse, EventsRecorded)],
                ref_template="#/components/schemas/{model}",
            )
            schema.setdefault("components", {}).setdefault("schemas", {}).update(defs["$defs"])
            for path, (request, response, summary) in HotPath.DOCUMENTED.items():
                schema["paths"][path] = {"post": _operation(request, response, summary)}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    return HotPath(app)


def _operation(request: type, response: type, summary: str) -> dict:
    def body(model: type) -> dict:
        return {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}

    error = {"description": "", "content": {"application/json": {}}}
    return {
        "summary": summary,
        "security": [{"APIKeyHeader": []}],
        "requestBody": {"required": True, "content": body(request)},
        "responses": {
            "200": {"description": "OK", "content": body(response)},
            "401": {**error, "description": "Missing or invalid API key"},
            "413": {**error, "description": "Body too large"},
            "422": {**error, "description": "Invalid body: `detail` names the fields"},
        },
    }


class MicroBatcher:
    """Single scores that arrive while the event loop is busy are scored together: one Redis
    round trip and one pass per model for all of them, on the loop. An idle server scores
    each request alone, a loop turn (microseconds) after it arrived; a busy one amortizes the
    lookup and the model calls over the requests that queued meanwhile, so the cost per
    request falls as the load rises. Results are those of scoring one by one (the same
    lookups, the same scores bit for bit); a request that fails fails alone.

    The loop does not wait for Redis: a batch's reads are sent, and while their replies are
    on their way the loop parses and queues the next requests (measured: a blocking round
    trip held the loop ~15% of the time under load). One batch is in flight at a time; one
    whose replies do not come within the store's timeout falls back like any failed lookup.

    Admission control: past capacity, requests queue. One that has waited longer than the
    queue budget (``RISK_SERVING_QUEUE_BUDGET_MS``) when its batch starts is answered at once by
    the transaction-only models, without a lookup (``fallback_overload``, counted in
    ``risk_feature_source``): a late answer is worth less to a payment than a fast one. While
    the oldest waiting score has waited longer than ``RISK_SERVING_SHED_AFTER_MS`` (50 ms:
    longer than a stall), new ones are refused before they are parsed (503 with
    ``Retry-After``, ``risk_requests_shed``): the cheapest answer."""

    def __init__(self, scorer: Callable[[], Scorer], max_size: int = 64):
        self.scorer, self.max_size = scorer, max_size
        self.pending: list[tuple[ScoreRequest, float, asyncio.Future]] = []
        self.in_flight: _Batch | None = None

    def behind(self, now: float, budget_s: float) -> bool:
        """Whether the oldest score waiting has waited longer than ``budget_s``: the service is
        past its capacity, and a new request is refused at once (503, before it is parsed)
        rather than queued behind the others."""
        return bool(self.pending) and now - self.pending[0][1] > budget_s

    def submit(self, request: ScoreRequest, received: float) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self.pending and self.in_flight is None:
            loop.call_soon(self._run)
        self.pending.append((request, received, future))
        return future

    def _run(self) -> None:
        if self.in_flight is not None or not self.pending:
            return
        batch, self.pending = self.pending[: self.max_size], self.pending[self.max_size :]
        scorer = self.scorer()
        # Past capacity, requests wait: one that waited beyond the budget is answered now,
        # without a lookup, rather than adding its round trip to everyone's wait.
        oldest = time.perf_counter() - scorer.config.queue_budget_ms / 1000
        late = [b for b in batch if b[1] < oldest]
        if late:
            batch = [b for b in batch if b[1] >= oldest]
            steps = scorer.scoring([b[0] for b in late], [b[1] for b in late], look_up=False)
            self._step(_Batch(late, scorer, steps))  # no wait: nothing is read
            if not batch:
                return
        steps = scorer.scoring([b[0] for b in batch], [b[1] for b in batch])
        self._step(_Batch(batch, scorer, steps))

    def _step(self, job: _Batch) -> None:
        """Advance a batch: to its next wait for Redis (watched on the loop), or to its end."""
        loop = asyncio.get_running_loop()
        try:
            in_flight = job.steps.send(None)
        except StopIteration as done:
            self._settle(job.batch, done.value)
        except Exception:  # one bad request (e.g. invalid given features): score each alone
            self._settle(job.batch, self._one_by_one(job))
        else:
            fd = in_flight.fileno()
            if fd is None:  # already answered
                return self._step(job)
            job.in_flight, job.fd = in_flight, fd
            loop.add_reader(fd, self._answered, job)
            timeout = job.scorer.config.redis_timeout_ms / 1000
            job.timer = loop.call_later(timeout, self._timed_out, job)
            self.in_flight = job
            return
        self.in_flight = None
        if self.pending:
            loop.call_soon(self._run)

    def _answered(self, job: _Batch) -> None:
        self._stop_watching(job)
        self._step(job)

    def _timed_out(self, job: _Batch) -> None:
        self._stop_watching(job)
        if not select.select([job.fd], [], [], 0)[0]:  # not answered while the loop was busy
            job.in_flight.abandon()  # its receive now fails: the batch falls back
        self._step(job)

    def _stop_watching(self, job: _Batch) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(job.fd)
        job.timer.cancel()

    @staticmethod
    def _one_by_one(job: _Batch) -> list:
        results = []
        for request, received, _ in job.batch:
            try:
                results.append(job.scorer.score(request, received))
            except Exception as exc:
                results.append(exc)
        return results

    @staticmethod
    def _settle(batch: list, results: list) -> None:
        for (_, _, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)


@dataclass(slots=True)
class _Batch:
    """A batch being scored: its requests, its scorer and where its scoring stands."""

    batch: list
    scorer: Scorer
    steps: Generator
    in_flight: InFlight | None = None
    fd: int = -1
    timer: asyncio.TimerHandle | None = None


class _Refused(Exception):
    def __init__(self, status: int, detail: object):
        self.status, self.detail = status, detail


class HotPath:
    """``POST /score``, ``POST /score/batch`` and ``POST /events`` as plain ASGI; every other
    request, and the lifespan, go to the FastAPI app. Responses are counted per endpoint and
    status."""

    DOCUMENTED: ClassVar[dict] = {
        "/score": (ScoreRequest, ScoreResponse, "Score one transaction"),
        "/score/batch": (BatchRequest, BatchResponse, "Score up to max_batch transactions"),
        "/events": (
            Events,
            EventsRecorded,
            "Record purchases in the real-time state: one "
            'event, or {"events": [...]} (up to 10,000). Idempotent by '
            "transaction_id: a failed call can be retried whole.",
        ),
    }
    MAX_BODY: ClassVar[dict] = {
        "/score": 64 * 1024,
        "/score/batch": 4 * 1024 * 1024,
        "/events": 4 * 1024 * 1024,
    }

    def __init__(self, app: FastAPI):
        self.app = app
        self.handlers = {
            "/score": self._score,
            "/score/batch": self._score_batch,
            "/events": self._events,
        }
        self.batcher = MicroBatcher(lambda: self.app.state.scorer)
        self._key = API_KEY_HEADER.lower().encode()
        self._counters: dict[tuple[str, int], object] = {}

    @property
    def state(self):
        return self.app.state

    def openapi(self) -> dict:
        return self.app.openapi()

    async def __call__(self, scope, receive, send):
        handler = self.handlers.get(scope["path"]) if scope["type"] == "http" else None
        if handler is None:
            return await self._counted(scope, receive, send)
        received = time.perf_counter()
        try:
            if scope["method"] != "POST":
                raise _Refused(405, "use POST")
            config = self.app.state.config
            given = next((v for k, v in scope["headers"] if k == self._key), b"")
            if not key_is_valid(given, config.api_keys):
                raise _Refused(401, f"missing or invalid {API_KEY_HEADER}")
            body = await self._body(receive, self.MAX_BODY[scope["path"]])
            status, payload = 200, await handler(body, config, received)
        except _Refused as exc:
            status, payload = exc.status, {"detail": exc.detail}
        except ValidationError as exc:
            status, payload = 422, {"detail": validation_errors(exc)}
        except InvalidValue as exc:
            status = 422
            payload = {
                "detail": [
                    {"loc": ["body", "features", exc.field], "msg": str(exc), "type": "value_error"}
                ]
            }
        except Exception:
            log.exception("%s failed", scope["path"])
            status, payload = 500, {"detail": "internal error"}
        content = orjson.dumps(payload)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(content)).encode()),
                    *([(b"retry-after", b"1")] if status == 503 else []),
                ],
            }
        )
        await send({"type": "http.response.body", "body": content})
        counted = self._counters.get((scope["path"], status))
        if counted is None:  # labels() takes a lock and builds a key: once per pair
            counted = self._counters[scope["path"], status] = metrics.REQUESTS.labels(
                scope["path"], str(status)
            )
        counted.inc()

    async def _score(self, body: bytes, config: ServingConfig, received: float) -> dict:
        if self.batcher.behind(received, config.shed_after_ms / 1000):
            metrics.SHED.inc()
            raise _Refused(503, "overloaded: retry")
        context = {"max_future_s": config.max_future_s}
        txn = ScoreRequest.model_validate_json(body, context=context)
        return (await self.batcher.submit(txn, received)).to_dict()

    async def _score_batch(self, body: bytes, config: ServingConfig, received: float) -> dict:
        context = {"max_future_s": config.max_future_s, "max_batch": config.max_batch}
        batch = BatchRequest.model_validate_json(body, context=context)
        received_all = [received] * len(batch.transactions)
        scored = await run_in_threadpool(
            self.app.state.scorer.score_many, batch.transactions, received_all
        )
        return {"results": [s.to_dict() for s in scored]}

    async def _events(self, body: bytes, config: ServingConfig, received: float) -> dict:
        events = Events.model_validate_json(body, context={"max_future_s": config.max_future_s})
        try:  # in a thread: a hung Redis must not stall the loop (and /score) for its timeout
            done = await run_in_threadpool(self.app.state.scorer.events.record, events.events)
        except (redis.RedisError, OnlineStoreError) as exc:
            log.warning("/events: real-time state unavailable: %s", exc)
            raise _Refused(503, "store unavailable, retry") from exc
        for outcome, count in zip(("recorded", "duplicate", "late"), done, strict=True):
            metrics.EVENTS.labels(outcome).inc(count)
        return vars(done)

    @staticmethod
    async def _body(receive, limit: int) -> bytes:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Refused(400, "client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _Refused(413, f"body larger than {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _counted(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = [500]

        async def counting_send(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            route = scope.get("route")
            metrics.REQUESTS.labels(route.path if route else "unmatched", str(status[0])).inc()
