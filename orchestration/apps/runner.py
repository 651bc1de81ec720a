"""Materialize assets in-process through the project's named jobs (used by the demo, the CLI, replay and tests).

Dagster's ``materialize()`` records its runs as ``__ephemeral_asset_job__``, a job that no code location holds:
the UI lists such runs but cannot re-execute them. Here every run is a run of a job in ``definitions.py``
(``all_assets_job`` unless the caller names another), recorded against the code location of ``workspace.yaml``
as ``make ui`` loads it, so the UI's Jobs, Runs and Overview show the history and Re-execute relaunches it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from orchestration.apps.instance import ensure_dagster_home, ensure_pool_limits
from orchestration.defs.parallel import shared_warehouse

WORKSPACE_YAML = Path(__file__).resolve().parents[2] / "workspace.yaml"


def materialize(
    selection: str | dg.AssetSelection | None = None,
    *,
    job: str | None = None,
    resources: Mapping[str, Any] | None = None,
    instance: dg.DagsterInstance | None = None,
    raise_on_error: bool = True,
    log_level: str = "INFO",
    stdout_log: Path | None = None,
    run_config: Mapping[str, Any] | None = None,
) -> dg.ExecutionResult:
    """Run the job ``job`` (default ``all_assets_job``: every asset), cut to ``selection`` (Dagster asset
    selection syntax) when given, with the asset checks of what runs.

    ``resources`` override the ones in ``definitions.py`` (tests point the warehouse at a temporary folder);
    ``run_config`` configures assets (``{"ops": {"user_sequences": {"config": {...}}}}``).
    Without ``instance`` the persistent instance under ``$RECSYS_HOME/dagster`` records the run, so it shows
    in the UI afterwards. The run holds the warehouse (``Warehouse.hold``) from start to end, so a second run
    on the same home waits for it instead of failing inside dbt.
    """
    from orchestration.definitions import all_assets_job, defs
    from orchestration.store.warehouse import Warehouse

    if instance is None:
        ensure_dagster_home()
        instance = dg.DagsterInstance.get()
    if resources:
        # The same Definitions with some resources swapped: Dagster binds resources to the assets when it
        # resolves a job, so swapping them on a resolved job conflicts as soon as the run cuts a subset.
        from dagster._record import replace

        defs = replace(defs, resources={**(defs.resources or {}), **resources})
    job_def = defs.resolve_job_def(job or all_assets_job.name)
    if resources:
        # Step processes would load the definitions from their module, without the swapped resources.
        job_def = job_def.with_executor_def(dg.in_process_executor)
    keys = checks = None
    if selection is not None:
        chosen = dg.AssetSelection.from_string(selection) if isinstance(selection, str) else selection
        graph = job_def.asset_layer.asset_graph
        # The checks of the selected assets, or the checks a selection names on their own (re-running a check).
        keys, checks = chosen.resolve(graph), chosen.resolve_checks(graph)
        if not keys and not checks:  # an empty selection would otherwise run the whole job
            raise ValueError(f"The selection {selection!r} holds no asset or check of {job_def.name}.")
    config = {**(run_config or {}), "loggers": {"console": {"config": {"log_level": log_level}}}}
    if shared_warehouse():
        ensure_pool_limits(instance, {node.definition.pool for node in job_def.graph.nodes} - {None})
    warehouse = (resources or {}).get("warehouse")
    with contextlib.ExitStack() as stack:
        stack.enter_context(Warehouse(home=getattr(warehouse, "home", None)).hold(f"Dagster run of {job_def.name}"))
        if stdout_log is not None:
            # dagster-dbt echoes every dbt log line to stdout; send them to a file so the caller's output stays readable.
            stdout_log.parent.mkdir(parents=True, exist_ok=True)
            stack.enter_context(contextlib.redirect_stdout(stack.enter_context(stdout_log.open("a"))))
        return _execute(job_def, keys, checks, instance, config, raise_on_error)


def _execute(job_def: dg.JobDefinition, keys: set[dg.AssetKey] | None, checks: set[dg.AssetCheckKey] | None,
             instance: dg.DagsterInstance, run_config: Mapping[str, Any], raise_on_error: bool) -> dg.ExecutionResult:
    # What `dagster job launch` records, executed here rather than by a run launcher: JobDefinition's
    # execute_in_process cannot record the code location, and the UI's Re-execute needs it
    # (dagster-graphql's launch_reexecution_from_parent_run reads the parent run's remote_job_origin).
    from dagster._core.execution.api import create_execution_plan, execute_run
    from dagster._core.snap import snapshot_from_execution_plan

    # DagsterInstance.create_run_for_job, which cannot take a check selection, with one. The run records the
    # selection, not a subset job, so a re-execution runs the same assets and checks again.
    if keys is not None or checks:
        job_def = job_def.get_subset(asset_selection=keys or set(), asset_check_selection=checks or set())
    plan = create_execution_plan(job_def, run_config=run_config, instance_ref=instance.get_ref()
                                 if instance.is_persistent else None, tags=job_def.run_tags)
    run = instance.create_run(
        job_name=job_def.name, run_id=None, run_config=run_config, op_selection=None, asset_selection=keys,
        asset_check_selection=checks, resolved_op_selection=None, step_keys_to_execute=plan.step_keys_to_execute,
        status=None, tags=job_def.run_tags, root_run_id=None, parent_run_id=None,
        job_snapshot=job_def.get_job_snapshot(),
        execution_plan_snapshot=snapshot_from_execution_plan(plan, job_def.get_job_snapshot_id()),
        parent_job_snapshot=job_def.get_parent_job_snapshot(), remote_job_origin=code_location_origin(job_def.name),
        job_code_origin=None, asset_graph=job_def.asset_layer.asset_graph,
    )
    return execute_run(_runnable(job_def, keys, checks), run, instance, raise_on_error=raise_on_error)


def _runnable(job_def: dg.JobDefinition, keys: set[dg.AssetKey] | None, checks: set[dg.AssetCheckKey] | None):
    """The job as this process runs it, or as the step processes of the multiprocess executor load it again
    from ``orchestration.definitions`` (a shared warehouse), as a code location would."""
    from dagster._core.definitions.job_base import InMemoryJob
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    if job_def.executor_def is dg.in_process_executor:
        return InMemoryJob(job_def)
    repository = ReconstructableRepository.for_module("orchestration.definitions", "defs")
    job = repository.get_reconstructable_job(job_def.name)
    return job.get_subset(asset_selection=keys, asset_check_selection=checks) if keys is not None or checks else job


def code_location_origin(job_name: str):
    """The job's origin in the code location that ``workspace.yaml`` declares (the one ``make ui`` loads);
    None when the project runs without its checkout (no workspace.yaml beside the package)."""
    from dagster._core.definitions.repository_definition.valid_definitions import SINGLETON_REPOSITORY_NAME
    from dagster._core.remote_origin import RemoteJobOrigin, RemoteRepositoryOrigin
    from dagster._core.workspace.load import location_origins_from_yaml_paths

    if not WORKSPACE_YAML.exists():
        return None
    (location,) = location_origins_from_yaml_paths([os.fspath(WORKSPACE_YAML)])
    return RemoteJobOrigin(RemoteRepositoryOrigin(location, SINGLETON_REPOSITORY_NAME), job_name)


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
