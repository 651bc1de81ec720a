"""Snapshot of the asset graph: an unintended new edge, key or check fails here.

After an intended change, regenerate with `UPDATE_SNAPSHOTS=1 make test` and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from orchestration.definitions import defs

SNAPSHOT = Path(__file__).resolve().parents[1] / "snapshots" / "asset_graph.json"


def _graph() -> dict:
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(parent.to_user_string() for parent in node.parent_keys),
            "checks": sorted(check.name for check in node.check_keys),
            "materializable": node.is_materializable,
            # Concurrency pools: on a shared warehouse each writer runs one step at a time across runs.
            "pools": sorted(node.pools),
        }
    return {"assets": assets, "jobs": sorted(job.name for job in defs.jobs or [])}


def test_asset_graph_matches_snapshot():
    current = _graph()
    if os.environ.get("UPDATE_SNAPSHOTS") or not SNAPSHOT.exists():
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    assert current == json.loads(SNAPSHOT.read_text())


def test_every_asset_has_a_description():
    graph = defs.resolve_asset_graph()
    missing = [
        key.to_user_string()
        for key in graph.get_all_asset_keys()
        if graph.get(key).is_materializable and not (graph.get(key).description or "").strip()
    ]
    assert missing == []
