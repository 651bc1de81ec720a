"""Materialize assets in-process against the project's Definitions (used by the demo, the CLI and tests)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from orchestration.apps.instance import ensure_dagster_home


def materialize(
    selection: str | None = None,
    *,
    resources: Mapping[str, Any] | None = None,
    instance: dg.DagsterInstance | None = None,
    raise_on_error: bool = True,
    log_level: str = "INFO",
    stdout_log: Path | None = None,
    run_config: Mapping[str, Any] | None = None,
) -> dg.ExecuteInProcessResult:
    """Run ``selection`` (Dagster asset selection syntax; default: every asset) with its asset checks.

    ``resources`` override the ones in ``definitions.py`` (tests point the warehouse at a temporary folder);
    ``run_config`` configures assets (``{"ops": {"user_sequences": {"config": {...}}}}``).
    Without ``instance`` the persistent instance under ``$RECSYS_HOME/dagster`` records the run, so it shows
    in the UI afterwards.
    """
    from orchestration.definitions import defs

    if instance is None:
        ensure_dagster_home()
        instance = dg.DagsterInstance.get()
    with contextlib.ExitStack() as stack:
        if stdout_log is not None:
            # dagster-dbt echoes every dbt log line to stdout; send them to a file so the caller's output stays readable.
            stdout_log.parent.mkdir(parents=True, exist_ok=True)
            stack.enter_context(contextlib.redirect_stdout(stack.enter_context(stdout_log.open("a"))))
        return _materialize(defs, selection, resources, instance, raise_on_error, log_level, run_config)


def config_for_selection(
    run_config: Mapping[str, Any], selection: str | dg.AssetSelection | None
) -> dict[str, Any]:
    """``run_config`` with its ``ops`` cut to the assets ``selection`` holds (None: every asset), since Dagster
    refuses config for an asset outside the run."""
    ops = dict(run_config.get("ops", {}))
    if selection is not None:
        from orchestration.definitions import defs

        chosen = dg.AssetSelection.from_string(selection) if isinstance(selection, str) else selection
        held = {key.to_user_string() for key in chosen.resolve(defs.resolve_asset_graph())}
        ops = {name: config for name, config in ops.items() if name in held}
    return {**run_config, "ops": ops}


def _materialize(defs, selection, resources, instance, raise_on_error, log_level, run_config) -> dg.ExecuteInProcessResult:
    assets = [*defs.assets, *defs.asset_checks]
    merged_resources = {**defs.resources, **(resources or {})}
    return dg.materialize(
        assets,
        selection=selection,
        resources=merged_resources,
        instance=instance,
        raise_on_error=raise_on_error,
        run_config={**(run_config or {}), "loggers": {"console": {"config": {"log_level": log_level}}}},
    )
