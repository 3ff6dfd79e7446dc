"""The scoring service: FastAPI over ``serving/scorer.py``.

The champions are loaded from MLflow by alias and the Redis client is opened in the lifespan
handler; both live on ``app.state``. The hot endpoints (``/score``, ``/score/batch``) read
the body themselves and validate it with pydantic's JSON parser (``model_validate_json``) and
answer with orjson: FastAPI's generic body and response handling costs more than the whole
scoring does. Their schemas are still pydantic models, documented in OpenAPI. A single score
(~0.3 ms of CPU) runs on the event loop, which is cheaper than a thread hop; a batch runs in
the threadpool. Validation errors never echo the input back (it may hold what the caller
should not have sent), and there is no access log (paths carry customer ids).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import signal
import time
from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import Depends, FastAPI, HTTPException, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from fastapi.security import APIKeyHeader
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from pydantic.json_schema import models_json_schema
from redis.backoff import NoBackoff
from redis.retry import Retry
from starlette.concurrency import run_in_threadpool

from serving import metrics
from serving.codec import InvalidValue
from serving.config import ServingConfig
from serving.inference_log import InferenceLog
from serving.online_store import OnlineRecord, OnlineStoreError, connect, safe_url
from serving.schemas import (
    BatchRequest,
    BatchResponse,
    FeaturesResponse,
    ScoreRequest,
    ScoreResponse,
)
from serving.scorer import ModelSet, Scorer

log = logging.getLogger("serving")
API_KEY_HEADER = "X-API-Key"
MAX_BODY = {"score": 64 * 1024, "batch": 4 * 1024 * 1024}
_api_key = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)


def check_key(request: Request) -> None:
    """The API key header against the configured keys (constant-time comparison)."""
    given = request.headers.get(API_KEY_HEADER, "")
    keys = request.app.state.config.api_keys
    if not given or not any(hmac.compare_digest(given, key) for key in keys):
        raise HTTPException(401, f"missing or invalid {API_KEY_HEADER}")


def _require_key(request: Request, _: Annotated[str | None, Security(_api_key)]) -> None:
    check_key(request)


Authorized = Annotated[None, Depends(_require_key)]


def _scorer(request: Request) -> Scorer:
    return request.app.state.scorer


ScorerDep = Annotated[Scorer, Depends(_scorer)]


def _json(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


def _errors(exc: ValidationError | RequestValidationError, prefix=("body",)) -> list[dict]:
    """pydantic's errors without the input values."""
    errors = (
        exc.errors(include_input=False, include_url=False, include_context=False)
        if isinstance(exc, ValidationError)
        else exc.errors()
    )
    return [
        {"loc": [*prefix, *e["loc"]] if isinstance(exc, ValidationError) else list(e["loc"]),
         "msg": e["msg"], "type": e["type"]}
        for e in errors
    ]  # fmt: skip


async def _read(request: Request, kind: str) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY[kind]:
        raise HTTPException(413, f"body larger than {MAX_BODY[kind]} bytes")
    body = await request.body()
    if len(body) > MAX_BODY[kind]:
        raise HTTPException(413, f"body larger than {MAX_BODY[kind]} bytes")
    return body


def _documented(model: type) -> dict:
    """OpenAPI for a body the handler parses itself: a reference to the model's schema."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
            },
        },
        "security": [{"APIKeyHeader": []}],
    }


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
        log.info("models reloaded: %s -> %s (shadow %s)", before, after, shadows)
        return {"before": before, "after": after, "shadow": shadows}


def create_app(config: ServingConfig | None = None) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cfg = config or ServingConfig.from_environment()
        cfg.check()
        if not cfg.redis_url:
            raise RuntimeError("REDIS_URL is not set (`make serve` sets the embedded store's)")
        timeout = cfg.redis_timeout_ms / 1000
        client = connect(
            cfg.redis_url, cluster=cfg.redis_cluster, socket_timeout=timeout,
            socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0),
        )  # fmt: skip
        models = await run_in_threadpool(ModelSet.load, cfg)
        inference_log = None
        if cfg.inference_log_uri:
            inference_log = InferenceLog(
                cfg.inference_log_uri, flush_s=cfg.log_flush_s, max_pending=cfg.log_max_pending
            )
        scorer = Scorer(
            models, client, cfg, inference_log=inference_log, where=safe_url(cfg.redis_url)
        )
        if inference_log is not None:
            inference_log.shadow = scorer.shadow_scores
            inference_log.start()
        app.state.config, app.state.scorer = cfg, scorer
        app.state.reload_lock = asyncio.Lock()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(
                signal.SIGHUP, lambda: asyncio.ensure_future(reload_models(app))
            )
        log.info(
            "serving %s (shadow %s), store %s, inference log %s",
            {t: m.label for t, m in models.champions.items()},
            {t: m.label for t, m in models.shadows.items()} or "off",
            safe_url(cfg.redis_url), cfg.inference_log_uri or "off",
        )  # fmt: skip
        try:
            yield
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGHUP)
            if inference_log is not None:
                await run_in_threadpool(inference_log.close)
            client.close()

    app = FastAPI(
        title="Risk scoring",
        version="1.0",
        summary="Fraud and BNPL default scores from online behavioural features.",
        lifespan=lifespan,
    )
    app.add_middleware(_CountRequests)

    @app.exception_handler(ValidationError)
    async def invalid_body(request: Request, exc: ValidationError) -> Response:
        return _json({"detail": _errors(exc)}, 422)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        return _json({"detail": _errors(exc)}, 422)

    @app.exception_handler(InvalidValue)
    async def invalid_feature(request: Request, exc: InvalidValue) -> Response:
        detail = [{"loc": ["body", "features", exc.field], "msg": str(exc), "type": "value_error"}]
        return _json({"detail": detail}, 422)

    @app.post(
        "/score", response_model=ScoreResponse, openapi_extra=_documented(ScoreRequest),
        summary="Score one transaction", responses={401: {}, 413: {}, 422: {}},
    )  # fmt: skip
    async def score(request: Request) -> Response:
        received = time.perf_counter()
        check_key(request)
        body = await _read(request, "score")
        context = {"max_future_s": request.app.state.config.max_future_s}
        txn = ScoreRequest.model_validate_json(body, context=context)
        return _json(request.app.state.scorer.score(txn, received).to_dict())

    @app.post(
        "/score/batch", response_model=BatchResponse, openapi_extra=_documented(BatchRequest),
        summary="Score up to max_batch transactions (one pipelined lookup)",
        responses={401: {}, 413: {}, 422: {}},
    )  # fmt: skip
    async def score_batch(request: Request) -> Response:
        received = time.perf_counter()
        check_key(request)
        body = await _read(request, "batch")
        config = request.app.state.config
        context = {"max_future_s": config.max_future_s, "max_batch": config.max_batch}
        batch = BatchRequest.model_validate_json(body, context=context)
        scored = await run_in_threadpool(
            request.app.state.scorer.score_many, batch.transactions, received
        )
        return _json({"results": [s.to_dict() for s in scored]})

    @app.get("/features/{customer_id}", response_model=FeaturesResponse)
    def features(customer_id: str, scorer: ScorerDep, _: Authorized) -> Response:
        """The customer's online record, as the fraud champion reads it (for debugging)."""
        version = scorer.models.champions["fraud"].bundle.feature_set_version
        try:
            found = scorer.store(version).get(customer_id)
        except OnlineStoreError as exc:
            raise HTTPException(503, f"online store unavailable: {exc}") from exc
        if not isinstance(found, OnlineRecord):
            raise HTTPException(404, f"no record for this customer ({found.reason})")
        return _json({
            "customer_id": customer_id, "feature_set_version": version, "as_of": found.as_of,
            "features": found.feature_dict(),
            "context": {k: list(v) if isinstance(v, tuple) else v
                        for k, v in found.context.items()},
        })  # fmt: skip

    @app.get("/health", summary="Liveness")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready", summary="Models loaded and the online store serving")
    def ready(scorer: ScorerDep) -> Response:
        problems, store = [], {}
        for version in scorer.models.versions:
            try:
                generation = scorer.store(version).current_generation(fresh=True)
            except OnlineStoreError as exc:
                problems.append(f"{version}: {exc}")
                continue
            if generation is None or generation.expired:
                problems.append(f"{version}: no generation serving")
            else:
                store[version] = {"generation": generation.id, "as_of": generation.as_of}
        body = {
            "ready": not problems, "problems": problems, "store": store,
            "models": {t: m.label for t, m in scorer.models.champions.items()},
            "shadow": {t: m.label for t, m in scorer.models.shadows.items()},
        }  # fmt: skip
        return _json(body, 200 if not problems else 503)

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus(request: Request) -> Response:
        inference_log = request.app.state.scorer.inference_log
        if inference_log is not None:
            metrics.LOG_PENDING.set(inference_log.pending)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/admin/reload", summary="Reload the models the registry aliases name now")
    async def reload(request: Request, _: Authorized) -> dict:
        try:
            return await reload_models(request.app)
        except Exception as exc:  # the running models stay
            raise HTTPException(503, f"reload failed, models unchanged: {exc}") from exc

    def openapi() -> dict:
        """FastAPI's schema plus the bodies the hot endpoints parse themselves."""
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary,
                                 routes=app.routes)  # fmt: skip
            _, defs = models_json_schema(
                [(ScoreRequest, "validation"), (BatchRequest, "validation")],
                ref_template="#/components/schemas/{model}",
            )
            schema.setdefault("components", {}).setdefault("schemas", {}).update(defs["$defs"])
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    return app


class _CountRequests:
    """Counts responses by endpoint and status (pure ASGI: a few microseconds a request)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
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
            endpoint = route.path if route is not None else "unmatched"
            metrics.REQUESTS.labels(endpoint, str(status[0])).inc()
