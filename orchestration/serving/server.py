"""``recsys serve``: the API under uvicorn, on the address its access settings allow."""

from __future__ import annotations

import copy
import sys


def serve(home: str | None, host: str, port: int, reload_seconds: float) -> None:
    """Run the API until stopped. Malformed access settings raise ``AccessConfigError`` before anything listens."""
    import uvicorn

    from orchestration.serving.api import create_app
    from orchestration.serving.auth import ApiAccess, serve_host

    access = ApiAccess.from_environment()
    host, notice = serve_host(host, access)
    if notice:
        print(f"recsys serve: {notice}", file=sys.stderr)
    # uvicorn's own log setup, plus the API's messages (which champion version is served, failed reloads).
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    log_config["loggers"]["orchestration"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    uvicorn.run(create_app(home, reload_seconds, access), host=host, port=port, log_config=log_config)
