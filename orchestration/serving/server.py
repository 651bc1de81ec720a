"""``recsys serve``: the API under uvicorn, on the address its access settings allow, in one or more processes."""

from __future__ import annotations

import argparse
import copy
import os
import sys

RELOAD_SECONDS = 30.0  # how often a running API checks the registry and the marts, at most
SWITCH_SECONDS = 0.001  # the interpreter's thread switch interval while serving (sys.setswitchinterval)
# What a worker process reads its arguments from: uvicorn starts workers from an import string, not a call.
HOME_VARIABLE, RELOAD_VARIABLE = "RECSYS_HOME", "RECSYS_API_RELOAD_SECONDS"


def add_serve_arguments(serve: argparse.ArgumentParser) -> None:
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default loopback only; other addresses need an API token: "
                            "RECSYS_API_TOKEN or RECSYS_API_TOKENS)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--reload-seconds", type=float, default=RELOAD_SECONDS,
                       help=f"check the registry for a new champion at most this often (default {RELOAD_SECONDS:g})")
    serve.add_argument("--workers", type=int, default=1,
                       help="server processes sharing the port, each with its own copy of the model (default 1)")
    serve.add_argument("--access-log", action="store_true",
                       help="log every request (off by default: at hundreds of requests a second it costs CPU)")


def serve_command(args: argparse.Namespace, ok: int, usage: int) -> int:
    from orchestration.ingest.event_log import EventSettingError
    from orchestration.serving.auth import AccessConfigError

    if args.workers < 1:
        print(f"recsys serve: --workers must be at least 1, got {args.workers}", file=sys.stderr)
        return usage
    try:
        serve(args.home, args.host, args.port, args.reload_seconds, args.workers, args.access_log)
    except (AccessConfigError, EventSettingError) as error:
        print(f"recsys serve: {error}", file=sys.stderr)
        return usage
    return ok


def one_thread_kernels() -> None:
    """Run torch, BLAS and OpenMP (LightGBM) kernels on one thread each, for the rest of the process. The API ranks
    small batches, one call at a time beside the threads that parse and answer requests: a kernel's second thread
    saves little on them, and when the other core is busy its spin-waits cost many times the work (on a busy
    2-core machine a session of items took 140 ms of CPU with the default threads, 22 ms with one)."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(limits=1)
    # A reload builds the next service on a thread of this process; the thread answering requests waits for the
    # interpreter lock at each switch, so a shorter interval shortens those waits (the default is 5 ms).
    sys.setswitchinterval(SWITCH_SECONDS)


def worker_app():
    """The app of one worker process, from the settings ``serve`` left in the environment."""
    from orchestration.serving.api import create_app

    one_thread_kernels()
    return create_app(os.environ.get(HOME_VARIABLE), float(os.environ.get(RELOAD_VARIABLE, RELOAD_SECONDS)))


def serve(home: str | None, host: str, port: int, reload_seconds: float, workers: int = 1,
          access_log: bool = False) -> None:
    """Run the API until stopped. Malformed access settings raise ``AccessConfigError``, malformed events settings
    ``EventSettingError``, before anything listens (or any worker starts)."""
    import uvicorn

    from orchestration.serving.api import create_app
    from orchestration.serving.auth import ApiAccess, serve_host
    from orchestration.serving.events import event_settings

    access = ApiAccess.from_environment()
    event_settings()
    host, notice = serve_host(host, access)
    if notice:
        print(f"recsys serve: {notice}", file=sys.stderr)
    # uvicorn's own log setup, plus the API's messages (which champion version is served, failed reloads).
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    log_config["loggers"]["orchestration"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    options = {"host": host, "port": port, "log_config": log_config, "access_log": access_log}
    if workers == 1:
        one_thread_kernels()
        uvicorn.run(create_app(home, reload_seconds, access), **options)
        return
    if home:
        os.environ[HOME_VARIABLE] = home
    os.environ[RELOAD_VARIABLE] = str(reload_seconds)
    uvicorn.run(f"{__name__}:worker_app", factory=True, workers=workers, **options)
