"""Helpers shared by the benchmarks: machine description, peak memory, the final JSON line."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def machine() -> dict[str, Any]:
    described = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
    }
    torch = sys.modules.get("torch")  # only where the benchmark uses it: importing torch costs seconds
    if torch is not None:
        described["torch"] = torch.__version__
        described["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return described


def peak_rss_mib() -> dict[str, float]:
    """Peak resident memory of this process and of its largest finished child (dbt runs as a subprocess)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"peak_rss_mib": round(own, 1), "peak_child_rss_mib": round(children, 1)}


def print_table(rows: list[tuple[str, Any]], title: str) -> None:
    width = max(len(name) for name, _ in rows)
    print(title)
    print("-" * len(title))
    for name, value in rows:
        shown = f"{value:,}" if isinstance(value, int) else (f"{value:.2f}" if isinstance(value, float) else str(value))
        print(f"{name:<{width}}  {shown}")


def emit_json(figures: dict[str, Any]) -> None:
    sys.stdout.flush()
    print(json.dumps(figures, sort_keys=True, default=str))
