"""``recsys serve``: the API under uvicorn, on the address its access settings allow, in one or more processes."""

from __future__ import annotations

import argparse
import contextlib
import copy
import fcntl
import itertools
import os
import shutil
import sys
import tempfile
from pathlib import Path

RELOAD_SECONDS = 30.0  # how often a running API checks the registry and the marts, at most
SWITCH_SECONDS = 0.001  # the interpreter's thread switch interval while serving (sys.setswitchinterval)
# What a worker process reads its arguments from: uvicorn starts workers from an import string, not a call.
HOME_VARIABLE, RELOAD_VARIABLE = "RECSYS_HOME", "RECSYS_API_RELOAD_SECONDS"
CORES_VARIABLE = "RECSYS_API_CORE_CLAIMS"  # the folder where pinned workers claim their cores
_core_claim: list[int] = []  # this worker's claim, an open locked file, held for the life of the process


def add_serve_arguments(serve: argparse.ArgumentParser) -> None:
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default loopback only; other addresses need an API token: "
                            "RECSYS_API_TOKEN or RECSYS_API_TOKENS)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--reload-seconds", type=float, default=RELOAD_SECONDS,
                       help=f"check the registry for a new champion at most this often (default {RELOAD_SECONDS:g})")
    serve.add_argument("--workers", type=int, default=1,
                       help="server processes sharing the port, each with its own copy of the model (default 1)")
    serve.add_argument("--no-pinning", dest="pinning", action="store_false",
                       help="let the system move the workers between cores (by default, where there are at least as "
                            "many workers as cores and no smaller CPU limit, each keeps to one core, so its caches "
                            "stay warm)")
    serve.add_argument("--access-log", action="store_true",
                       help="log every request (off by default: at hundreds of requests a second it costs CPU)")


def serve_command(args: argparse.Namespace, ok: int, usage: int) -> int:
    from orchestration.ingest.event_log import EventSettingError
    from orchestration.serving.auth import AccessConfigError

    if args.workers < 1:
        print(f"recsys serve: --workers must be at least 1, got {args.workers}", file=sys.stderr)
        return usage
    try:
        serve(args.home, args.host, args.port, args.reload_seconds, args.workers, args.access_log, args.pinning)
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


def cpu_quota(cgroup: str = "/sys/fs/cgroup") -> float | None:
    """The cores' worth of CPU time this process's cgroup may use (a container's CPU limit), None without a limit.
    Reads the root of the process's cgroup namespace, as a container sees it (cgroup v2, then v1)."""
    folder = Path(cgroup)
    try:
        quota, period = folder.joinpath("cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota, period = (folder.joinpath("cpu", name).read_text().strip()
                             for name in ("cpu.cfs_quota_us", "cpu.cfs_period_us"))
        except OSError:
            return None
    if quota in ("max", "-1"):
        return None
    try:
        return int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None


def pins_workers(workers: int, cgroup: str = "/sys/fs/cgroup") -> bool:
    """Whether ``workers`` processes should each keep to a core: only where they fill every core the server may
    use. With fewer, the server shares the machine, and pinning every server's first workers to the same first
    cores would crowd them; under a container's CPU limit smaller than its cores, the cores it sees are the
    host's, shared with every other container."""
    if workers < 2 or not hasattr(os, "sched_setaffinity"):
        return False
    cores = len(os.sched_getaffinity(0))
    quota = cpu_quota(cgroup)
    return workers >= cores and (quota is None or quota >= cores)


def pin_to_free_core(claims: str | os.PathLike) -> int | None:
    """Pin every thread of this process to one core: the core of the first claim in the ``claims`` folder that no
    other process holds (claim i is the i-th core this process may use, round robin), or None where none is free
    or the system cannot pin. A claim is a lock on a file, which the kernel releases when its holder exits, so a
    worker that replaces a dead one takes the core its predecessor had.

    Measured on 2 cores, 2 workers and a load generator (BENCHMARKS.md): the same sessions' p99 fell from 23 to 26
    ms unpinned to 15 to 17 ms pinned, as a worker that hops between cores finds its matrices and compiled trees
    out of its caches. A reload's child process (``warming``) inherits its worker's core."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cores = sorted(os.sched_getaffinity(0))
    for slot in itertools.count():  # ends: only the live workers hold claims
        try:
            handle = os.open(os.path.join(claims, f"core-claim-{slot}"), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(handle)
            continue
        _core_claim.append(handle)
        core = cores[slot % len(cores)]
        for thread in os.listdir("/proc/self/task"):  # threads started before the app (uvicorn's health check)
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(thread), {core})
        os.sched_setaffinity(0, {core})
        return core
    return None  # unreachable


def worker_app():
    """The app of one worker process, from the settings ``serve`` left in the environment."""
    from orchestration.serving.api import create_app

    if os.environ.get(CORES_VARIABLE):
        pin_to_free_core(os.environ[CORES_VARIABLE])
    one_thread_kernels()
    return create_app(os.environ.get(HOME_VARIABLE), float(os.environ.get(RELOAD_VARIABLE, RELOAD_SECONDS)))


def serve(home: str | None, host: str, port: int, reload_seconds: float, workers: int = 1,
          access_log: bool = False, pinning: bool = True) -> None:
    """Run the API until stopped. Malformed access settings raise ``AccessConfigError``, malformed events settings
    ``EventSettingError``, before anything listens (or any worker starts). With ``pinning``, workers that fill the
    machine's cores each keep to one (``pins_workers``, ``pin_to_free_core``)."""
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
    claims = tempfile.mkdtemp(prefix="recsys-serve-cores-") if pinning and pins_workers(workers) else ""
    if claims:
        print(f"recsys serve: each of the {workers} workers keeps to one core (--no-pinning to let them move)",
              file=sys.stderr)
    os.environ[CORES_VARIABLE] = claims
    try:
        uvicorn.run(f"{__name__}:worker_app", factory=True, workers=workers, **options)
    finally:
        if claims:
            shutil.rmtree(claims, ignore_errors=True)
