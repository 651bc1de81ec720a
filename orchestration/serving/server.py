"""``recsys serve``: the API under uvicorn, on the address its access settings allow."""

from __future__ import annotations

import copy
import sys


def one_thread_kernels() -> None:
    """Run torch, BLAS and OpenMP (LightGBM) kernels on one thread each, for the rest of the process. The API ranks
    small batches, one call at a time beside the threads that parse and answer requests: a kernel's second thread
    saves little on them, and when the other core is busy its spin-waits cost many times the work (on a busy
    2-core machine a session of items took 140 ms of CPU with the default threads, 22 ms with one)."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(limits=1)


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
    one_thread_kernels()
    uvicorn.run(create_app(home, reload_seconds, access), host=host, port=port, log_config=log_config)
