"""Helpers shared by the benchmarks: machine description, peak memory, the final JSON line."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

    from recmodels.presets import Preset, SASRecConfig, TrainConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
# The SASRec flags the benchmarks share: flag -> (preset part, field, type, help).
SASREC_FLAGS = {
    "--epochs": ("train", "epochs", int, "upper bound; early stopping usually ends sooner"),
    "--patience": ("train", "patience", int, "validations without improvement before stopping"),
    "--hidden": ("model", "hidden_size", int, "SASRec hidden size"),
    "--layers": ("model", "num_layers", int, "SASRec Transformer blocks"),
    "--heads": ("model", "num_heads", int, "SASRec attention heads"),
    "--dropout": ("model", "dropout", float, "SASRec dropout"),
    "--lr": ("train", "lr", float, "peak AdamW learning rate"),
    "--batch": ("train", "batch_size", int, "training windows per step"),
    "--warmup": ("train", "warmup_steps", int, "optimizer steps of linear learning-rate warm-up"),
    "--windows": ("train", "windows_per_sequence", int, "training windows of max_length + 1 items per sequence"),
    "--max-length": ("model", "max_length", int, "most recent items the model sees"),
    "--item-to-item-decay": ("train", "item_to_item_weight_decay", float, "AdamW decay of the item-to-item matrix"),
    "--item-to-item-lr-scale": ("train", "item_to_item_lr_scale", float, "learning-rate multiplier of the item-to-item matrix"),
}


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


def add_preset_flags(parser: argparse.ArgumentParser, preset: Preset, preset_name: str, flags: Sequence[str]) -> None:
    """``flags`` (keys of ``SASREC_FLAGS``) with ``preset``'s values as defaults, named in each help."""
    for flag in flags:
        part, field, kind, text = SASREC_FLAGS[flag]
        parser.add_argument(flag, type=kind, default=getattr(getattr(preset, part), field),
                            help=f"{text} (default %(default)s, {preset_name})")


def configs_from_flags(args: argparse.Namespace, preset: Preset, flags: Sequence[str]) -> tuple[SASRecConfig, TrainConfig]:
    """``preset``'s model and training configs with the values ``add_preset_flags``' flags were given."""
    changes: dict[str, dict[str, Any]] = {"model": {}, "train": {}}
    for flag in flags:
        part, field, _, _ = SASREC_FLAGS[flag]
        changes[part][field] = getattr(args, flag.removeprefix("--").replace("-", "_"))
    return replace(preset.model, **changes["model"]), replace(preset.train, **changes["train"])
