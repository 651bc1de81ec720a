"""Admin actions over HTTP (the ``admin`` scope): reload the champion now, or roll back to the previous one.

Both change what is served only through the registry and the holder's usual swap: the new service is built beside
the old one, which answers every request until the new one is ready, so neither action drops a request.
"""

# No ``from __future__ import annotations``: FastAPI reads these annotations at runtime.

from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

from orchestration.registry.promotion import rollback
from orchestration.serving.auth import ADMIN, ApiAccess
from orchestration.serving.schemas import ErrorDetail

RELOAD_WAIT_SECONDS = 600  # an admin reload waits this long for a check already running before giving up


class AdminResult(BaseModel):
    swapped: bool = Field(description="Whether this call swapped in a new service (a version or new data).")
    model_version: int | None = Field(description="The champion version served after the call.")
    data_version: str | None = Field(description="Fingerprint of the marts served after the call.")
    previous_version: int | None = Field(description="The version served before the call.")
    problem: str | None = Field(description="Why nothing could be loaded, when that is so; the old model serves on.")


def _state(holder) -> tuple[int | None, str | None]:
    served = holder.current
    return (None, None) if served is None else (served.version, served.service.data.version)


def _reload(holder) -> AdminResult:
    before, _ = _state(holder)
    if not holder.check_now(timeout=RELOAD_WAIT_SECONDS):
        raise HTTPException(503, f"A reload is still running after {RELOAD_WAIT_SECONDS} s; try again later.")
    version, data = _state(holder)
    return AdminResult(swapped=holder.last_swapped, model_version=version, data_version=data,
                       previous_version=before, problem=holder.problem)


def add_admin_routes(app: FastAPI, access: ApiAccess, responses: dict[int | str, dict[str, Any]]) -> None:
    """``POST /admin/reload`` and ``POST /admin/rollback``; ``responses``: the documented 401/403 bodies."""
    admin = [Depends(access.requirement(ADMIN))]
    conflict = {409: {"model": ErrorDetail, "description": "No previous champion to roll back to"}}

    @app.post("/admin/reload", response_model=AdminResult, dependencies=admin, responses=responses, tags=["admin"])
    def reload_champion(request: Request) -> AdminResult:
        """Check the registry and the marts now, instead of at the next ``reload_seconds``; answers once the
        current champion over the newest data is served (or why it could not be loaded)."""
        return _reload(request.app.state.champion)

    @app.post("/admin/rollback", response_model=AdminResult, dependencies=admin,
              responses={**responses, **conflict}, tags=["admin"])
    def rollback_champion(request: Request) -> AdminResult:
        """Move the registry's champion alias back to the previous champion (as ``recsys rollback``), then serve
        it; the demoted version is tagged ``rolled_back_at``."""
        holder = request.app.state.champion
        try:
            rollback(holder.client)
        except LookupError as error:
            raise HTTPException(409, str(error.args[0])) from error
        return _reload(holder)
