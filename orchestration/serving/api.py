"""The serving API: recommendations, similar items and explanations from the registry's champion.

    recsys serve --port 8000        # or: uvicorn --factory orchestration.serving.api:create_app

``/`` is a page over the JSON endpoints (static/: plain HTML and JavaScript, no build step); ``/docs`` and
``/redoc`` serve Swagger UI and ReDoc from the installed ``fastapi-offline`` package, so nothing is fetched from a
CDN and both work offline.

The champion bundle is loaded at startup, and every known customer ranked (``champion.ChampionHolder``). Requests
check the registry and the warehouse at most every ``reload_seconds`` (in a background thread, so no request waits
for it); when the ``champion`` alias has moved, the new version is loaded and warmed beside the old one, and when
the marts' fingerprint has changed (new events ingested and transformed), the same version is loaded over the new
data; either is swapped in as one reference, so a request sees one model and one data from start to end. A failed reload (the warehouse locked by a writer, a broken
bundle) is logged and the old model keeps serving.

Ids are the shop's own: customer ids are pseudonymised exactly as the marts do, item ids are the catalogue's.
Every error is JSON ``{"detail": ...}``: a message for the app's own errors, FastAPI's list of validation errors
for a 422; bad input is a 4xx, never a 5xx.
"""

# No ``from __future__ import annotations``: FastAPI reads these annotations at runtime.

import logging
from contextlib import asynccontextmanager
from pathlib import Path as FilePath
from typing import Annotated, Any

import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, StringConstraints
from starlette.concurrency import run_in_threadpool

from orchestration.registry.promotion import BUNDLE_MODEL, CHAMPION_ALIAS
from orchestration.registry.tracking import MLflowTracking
from orchestration.serving.admin import add_admin_routes
from orchestration.serving.auth import READ, ApiAccess
from orchestration.serving.champion import ChampionHolder, Served
from orchestration.serving.events import add_event_route, catch_up
from orchestration.serving.limits import MAX_BODY_BYTES, BodyLimit
from orchestration.serving.responses import frame_items, number, session_json, text, user_json
from orchestration.serving.schemas import (
    EXAMPLE_CUSTOMER,
    EXAMPLE_ITEM,
    MAX_ID_LENGTH,
    UNKNOWN_ITEM,
    CustomerHistory,
    ErrorDetail,
    Explanation,
    Health,
    InvalidField,
    ModelInfo,
    PopularItems,
    Purchase,
    RecommendedItem,
    SessionRecommendations,
    SessionRequest,
    SimilarItem,
    SimilarItems,
    UserRecommendations,
    ValidationErrors,
)
from orchestration.serving.service import MAX_K, RecommendationService
from orchestration.store.privacy import pseudonymization_key
from orchestration.store.warehouse import Warehouse
from recmodels.recommender import RANKER

logger = logging.getLogger(__name__)

STATIC = FilePath(__file__).parent / "static"  # the page

# ------------------------------------------------------------------------------------------- the champion


async def _served(request: Request) -> Served:
    # async: it only reads a reference and may start a thread, so it runs on the event loop rather than taking a
    # worker thread per request as a plain function dependency would.
    holder: ChampionHolder = request.app.state.champion
    holder.maybe_refresh()
    catch_up(request.app)  # the other workers' events first: a read reflects them, whichever worker took them
    served = holder.current
    if served is None:
        raise HTTPException(503, f"No model to serve: {holder.problem}")
    return served


Champion = Annotated[Served, Depends(_served)]
# Stripped, as the marts strip them; a blank id is a 422.
ShopId = StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_ID_LENGTH)
UserId = Annotated[str, ShopId, Path(description="The shop's customer id.", openapi_examples={
    "demo": {"summary": "A customer of the demo shop", "value": EXAMPLE_CUSTOMER},
    "unknown": {"summary": "An unknown customer: the popularity fallback", "value": "no-such-customer"}})]
ItemId = Annotated[str, ShopId, Path(description="The catalogue's item id.", openapi_examples={
    "demo": {"summary": "An item of the demo shop", "value": EXAMPLE_ITEM}})]
K = Annotated[int, Query(ge=1, le=MAX_K, description="How many items.")]

# ------------------------------------------------------------------------------------ service -> response


def recommended_items(frame: pd.DataFrame) -> list[RecommendedItem]:
    return [RecommendedItem(**row) for row in frame_items(frame)]


def json_response(model: BaseModel) -> Response:
    """``model`` as its JSON, serialised once by pydantic: a route returning the model itself has FastAPI validate
    and encode it again, which cost more than answering a customer from their kept answer (the route's
    ``response_model`` still documents it)."""
    return Response(model.model_dump_json(), media_type="application/json")


def user_response(answer: dict[str, Any], version: int) -> UserRecommendations:
    return UserRecommendations(user_id=answer["user_id"], known_user=answer["known_user"],
                               strategy=answer["strategy"], history_length=answer.get("history_length"),
                               model_version=version, items=recommended_items(answer["items"]))


def session_answer(service: RecommendationService, body: SessionRequest, include_seen: bool,
                   as_rows: bool = False) -> dict[str, Any]:
    """The service's answer to a session body: its items (the original shape), or its typed events."""
    if body.events is None:
        return service.recommend_session(body.items, body.k, include_seen=include_seen, as_rows=as_rows)
    events = [(e.item_id, e.event_type, e.timestamp) for e in body.events]
    return service.recommend_events(events, body.k, include_seen=include_seen, shop_customer_id=body.user_id,
                                    as_rows=as_rows)


def session_response(answer: dict[str, Any], version: int) -> SessionRecommendations:
    return SessionRecommendations(strategy=answer["strategy"], unknown_items=answer["unknown_items"],
                                  user_id=answer.get("user_id"), known_user=answer.get("known_user"),
                                  text_only_items=answer["text_only_items"], model_version=version,
                                  items=recommended_items(answer["items"]))


def similar_response(answer: dict[str, Any], version: int) -> SimilarItems:
    items = [SimilarItem(rank=int(row["rank"]), item_id=str(row["item_id"]), title=str(row["title"]),
                         score=number(row["score"]), co_purchase=number(row["co_purchase"]),
                         text_cosine=number(row["text_cosine"]))
             for row in answer["items"].to_dict("records")]
    return SimilarItems(item_id=answer["item_id"], title=str(answer["title"]), known_item=bool(answer["known_item"]),
                        model_version=version, items=items)


def explain_response(answer: dict[str, Any], version: int) -> Explanation:
    return Explanation(
        **{name: answer[name] for name in ("user_id", "item_id", "known_user", "explanation", "reason", "candidate")},
        title=str(answer["title"]), because_of=text(answer["because_of"]),
        because_of_title=text(answer["because_of_title"]), strength=number(answer["strength"]),
        rank=answer["rank"], score=number(answer["score"]),
        features={name: number(value) for name, value in answer["features"].items()}, model_version=version)


def popular_response(answer: dict[str, Any], version: int) -> PopularItems:
    return PopularItems(strategy=answer["strategy"], model_version=version, items=recommended_items(answer["items"]))


def history_response(answer: dict[str, Any]) -> CustomerHistory:
    items = [Purchase(item_id=str(row["item_id"]), title=str(row["title"]),
                      occurred_at=pd.Timestamp(row["occurred_at"]).isoformat(), quantity=number(row["quantity"]))
             for row in answer["items"].to_dict("records")]
    return CustomerHistory(user_id=answer["user_id"], known_user=answer["known_user"],
                           purchases=answer["purchases"], items=items)


def model_response(served: Served) -> ModelInfo:
    champion, spec = served.champion, served.service.bundle.spec
    return ModelInfo(
        model=champion.get("model", BUNDLE_MODEL), version=served.version,
        metrics={name: number(value) for name, value in (champion.get("metrics") or {}).items()},
        measured_at=text(champion.get("measured_at")),
        data_version=text(champion.get("data_version")), promoted_at=text(champion.get("promoted_at")),
        promotion_reasons=list(champion.get("promotion_reasons") or []),
        previous_champions=list(champion.get("previous_champions") or []),
        run_id=text(champion.get("run_id")), serves=spec.get("serves", RANKER), sources=list(spec.get("sources", [])),
        n_candidates=spec.get("n_candidates"), recent_items=spec.get("recent_items"),
        features=list(spec.get("features", [])), split=text(spec.get("split")),
        test_cutoff=text(spec.get("test_cutoff")), as_of=served.service.data.as_of.isoformat())


# --------------------------------------------------------------------------------------------------- app


def _message(error: Exception) -> str:
    # str(KeyError("x")) is "'x'", quoted; the message itself reads better.
    return str(error.args[0]) if error.args else type(error).__name__


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses: the body each really has, with an example from the demo."""
    return {status: ERROR_RESPONSES[status] for status in statuses}


# Each example is the body the app gives for the request in its description (a test sends each one).
ERROR_RESPONSES: dict[int, dict[str, Any]] = {
    400: {"model": ErrorDetail, "description": "The body is not JSON",
          "content": {"application/json": {"example": {"detail": "There was an error parsing the body"}}}},
    401: {"model": ErrorDetail, "description": "No valid bearer token, where reads need one (RECSYS_API_READS=token)",
          "content": {"application/json": {"example": {
              "detail": "This needs a bearer token with the 'read' scope: send 'Authorization: Bearer TOKEN'."}}}},
    403: {"model": ErrorDetail, "description": "A valid token without the scope the endpoint needs (here an "
                                               "events-only token reading)",
          "content": {"application/json": {"example": {"detail": "The token lacks the 'read' scope (it has events)."}}}},
    413: {"model": ErrorDetail, "description": f"A body over {MAX_BODY_BYTES:,} bytes",
          "content": {"application/json": {"example": {
              "detail": f"The request body is larger than {MAX_BODY_BYTES:,} bytes."}}}},
    404: {"model": ErrorDetail, "description": f"Unknown item (here /similar/{UNKNOWN_ITEM})",
          "content": {"application/json": {"example": {
              "detail": f"item {UNKNOWN_ITEM!r} is neither in the model's catalogue nor has a description"}}}},
    422: {"model": ValidationErrors, "description": f"Invalid input (here /recommendations/{EXAMPLE_CUSTOMER}?k=0)",
          "content": {"application/json": {"example": {"detail": [{
              "type": "greater_than_equal", "loc": ["query", "k"], "msg": "Input should be greater than or equal to 1",
              "input": "0", "ctx": {"ge": 1}}]}}}},
    503: {"model": ErrorDetail, "description": "No champion to serve yet",
          "content": {"application/json": {"example": {
              "detail": f"No model to serve: {BUNDLE_MODEL} has no {CHAMPION_ALIAS} yet: "
                        "run the retrain job (promotion_decision)."}}}},
}


def _answer_caller_errors(app: FastAPI) -> None:
    """The service raises ValueError for a bad argument and KeyError for an unknown item: the caller's fault.
    A ValueError is reported in FastAPI's shape of a 422, so that every 422 has one body."""

    @app.exception_handler(ValueError)
    async def _bad_value(request: Request, error: ValueError) -> JSONResponse:
        logger.info("422 for %s: %s", request.url.path, error)
        invalid = InvalidField(type="value_error", loc=[], msg=_message(error))
        return JSONResponse(status_code=422, content={"detail": [invalid.model_dump(exclude_none=True)]})

    @app.exception_handler(KeyError)
    async def _unknown_key(request: Request, error: KeyError) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": _message(error)})


def _read_route(reads: list, *statuses: int) -> dict[str, Any]:
    """A read endpoint's guard (``reads``: a read token where reads need one) and its documented errors."""
    return {"dependencies": reads, "responses": _errors(401, 403, *statuses)}


def _guard(app: FastAPI, access: ApiAccess) -> None:
    """Bodies capped (413) and CORS closed unless ``access`` lists origins: without CORS headers browsers keep
    other sites' pages from calling the API."""
    app.state.access = access
    app.add_middleware(BodyLimit)
    if access.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(access.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])


def _champion_lifespan(home: str | None, reload_seconds: float):
    """The app's start and stop: the champion loaded (and warmed) before the first request, closed at exit."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        holder = ChampionHolder(Warehouse(home=home), MLflowTracking(home=home), pseudonymization_key(),
                                reload_seconds)
        holder.refresh()  # before the first request; without a champion the app starts and answers 503
        app.state.champion = holder
        catch_up(app)  # a restarted worker reads what the others took meanwhile now, not on its first request
        yield
        holder.close(timeout=60)

    return lifespan


def create_app(home: str | None = None, reload_seconds: float = 30, access: ApiAccess | None = None) -> FastAPI:
    """The API over the champion in ``home`` (default $RECSYS_HOME or ./.recsys); who may call it: ``access``
    (default: the RECSYS_API_* settings, ``orchestration.serving.auth``)."""
    access = ApiAccess.from_environment() if access is None else access
    reads = [Depends(access.requirement(READ))]
    app = FastAPIOffline(title="recsys", version="1", lifespan=_champion_lifespan(home, reload_seconds),
                         description="Recommendations from the MLflow registry's champion recommender bundle. "
                                     "The examples are ids of the demo's synthetic shop (`make demo`).",
                         swagger_ui_parameters={"validatorUrl": None})  # the validator badge calls out
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _guard(app, access)

    _answer_caller_errors(app)
    add_admin_routes(app, access, _errors(401, 403, 503))
    add_event_route(app, access, home)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        """The page: the champion, a customer's history and recommendations, similar items, popular items."""
        return FileResponse(STATIC / "index.html")

    @app.get("/health", response_model=Health, responses=_errors(503))
    def health(served: Champion) -> Health:
        """Ready to serve: the champion version loaded and the times its data runs to."""
        service = served.service
        return Health(status="ok", model_version=served.version, as_of=service.as_of.isoformat(),
                      data_as_of=service.data.as_of.isoformat(), data_version=service.data.version)

    @app.get("/model", response_model=ModelInfo, **_read_route(reads, 503))
    def model(served: Champion) -> ModelInfo:
        """The champion being served: version, promotion metrics and reasons, data version and bundle spec."""
        return model_response(served)

    @app.post("/recommendations/session", response_model=SessionRecommendations, **_read_route(reads, 400, 413, 422, 503))
    def recommend_session(body: SessionRequest, served: Champion,
                          include_seen: Annotated[bool, Query(description="Also recommend the session's own "
                                                                          "items.")] = False
                          ) -> Response:
        """Recommendations for a session: its items (viewed or bought, oldest first), or its typed events (views,
        carts, favourites, purchases), which feed the ranker's behaviour features and the explanations ("You
        viewed this", "In your cart", "Viewed together with X"). Anonymous unless user_id names the customer. Its
        own items are left out unless include_seen."""
        answer = session_answer(served.service, body, include_seen, as_rows=True)
        return Response(session_json(served.service, answer, served.version), media_type="application/json")

    @app.get("/recommendations/{user_id}", response_model=UserRecommendations, **_read_route(reads, 422, 503))
    async def recommend_user(user_id: UserId, served: Champion, k: K = 10) -> Response:
        """A customer's recommendations from their purchase history; popular items for an unknown customer."""
        # A kept answer is a lookup, answered on the event loop; one to rank now is ranked in a worker thread.
        body = user_json(served.service, served.version, user_id, k, rank=False)
        if body is None:
            body = await run_in_threadpool(user_json, served.service, served.version, user_id, k)
        return Response(body, media_type="application/json")

    @app.get("/customers/{user_id}/history", response_model=CustomerHistory, **_read_route(reads, 422, 503))
    def customer_history(user_id: UserId, served: Champion,
                         n: Annotated[int, Query(ge=1, le=MAX_K, description="How many purchases.")] = 10
                         ) -> CustomerHistory:
        """A customer's latest purchases, newest first: what their recommendations start from."""
        return history_response(served.service.history(user_id, n))

    @app.get("/popular", response_model=PopularItems, **_read_route(reads, 422, 503))
    def popular(served: Champion, k: K = 10) -> PopularItems:
        """Items popular now: what a customer without purchases is recommended."""
        return popular_response(served.service.popular(k), served.version)

    @app.get("/similar/{item_id}", response_model=SimilarItems, **_read_route(reads, 404, 422, 503))
    def similar(item_id: ItemId, served: Champion, k: K = 10) -> SimilarItems:
        """Items bought together with this one or described alike."""
        return similar_response(served.service.similar(item_id, k), served.version)

    @app.get("/explain/{user_id}/{item_id}", response_model=Explanation, **_read_route(reads, 404, 422, 503))
    def explain(user_id: UserId, item_id: ItemId, served: Champion) -> Explanation:
        """Why (or why not) an item is recommended to a customer: rank, score, explanation, ranker features."""
        return explain_response(served.service.explain(user_id, item_id), served.version)

    return app
