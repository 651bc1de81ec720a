"""`make ui` on a clean environment: the webserver comes up with the code location loaded, every asset in it,
and an instance that shows no "Join the Dagster community" dialog."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from orchestration.apps.instance import INSTANCE_YAML, ensure_dagster_home

ROOT = Path(__file__).resolve().parents[2]
LOCATION_QUERY = """{
  workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus locationOrLoadError {
    __typename
    ... on RepositoryLocation { repositories { assetNodes { assetKey { path } } } }
    ... on PythonError { message }
  } } } }
  shouldShowNux
}"""
STARTUP_S = 80


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["data"]


def _wait_for_location(port: int, process: subprocess.Popen, log: Path) -> dict:
    """The GraphQL answer once the location has finished loading (loaded or failed)."""
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        assert process.poll() is None, f"make ui exited with {process.returncode}:\n{log.read_text()[-3000:]}"
        try:
            data = _graphql(port, LOCATION_QUERY)
        except OSError:  # not listening yet
            data = None
        entries = (data or {}).get("workspaceOrError", {}).get("locationEntries") or []
        if entries and all(entry["loadStatus"] == "LOADED" for entry in entries):
            return data
        time.sleep(1)
    raise AssertionError(f"no loaded code location after {STARTUP_S} s:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen) -> None:
    """End make, dagster dev, the webserver, the daemon and the code servers: they share one process group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
    # Whatever of the group outlived the polite request (make may exit before its services) goes now.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def test_make_ui_serves_the_code_location_with_every_asset(tmp_path):
    make = shutil.which("make", path="/usr/bin:/bin")
    if make is None:
        pytest.skip("make is not installed")
    port = _free_port()
    home = tmp_path / "home"
    # A shell that never activated .venv. `-o install` runs the ui recipe as it is without reinstalling;
    # dagster dev takes its --port from DAGSTER_CLI_DEV_PORT (click's environment prefix of the dagster CLI).
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", str(tmp_path)), "RECSYS_HOME": str(home),
           "DAGSTER_HOME": str(home / "dagster"), "DAGSTER_CLI_DEV_PORT": str(port)}
    log = tmp_path / "make-ui.log"
    with open(log, "w") as out:
        process = subprocess.Popen([make, "-o", "install", "ui"], cwd=ROOT, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        data = _wait_for_location(port, process, log)
    finally:
        _stop(process)
    (entry,) = data["workspaceOrError"]["locationEntries"]
    location = entry["locationOrLoadError"]
    assert location["__typename"] == "RepositoryLocation", location
    nodes = [node for repo in location["repositories"] for node in repo["assetNodes"]]
    served = {"/".join(node["assetKey"]["path"]) for node in nodes}
    from orchestration.definitions import defs

    assert served == {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert data["shouldShowNux"] is False
    assert "nux:\n  # No" in (home / "dagster" / "dagster.yaml").read_text()  # make ui's first step wrote it


def test_instance_yaml_is_valid_and_turns_the_community_dialog_off(tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    dagster_home = ensure_dagster_home(tmp_path / "home")
    assert (dagster_home / "dagster.yaml").read_text() == INSTANCE_YAML
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    assert instance.nux_enabled is False
    assert instance.telemetry_enabled is False
    assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 1


def test_an_existing_instance_yaml_gets_the_missing_setting_and_keeps_its_own(tmp_path, monkeypatch):
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    # A home made before the nux setting existed, edited by its user (no trailing newline).
    edited = "run_queue:\n  max_concurrent_runs: 2\ntelemetry:\n  enabled: true"
    (dagster_home / "dagster.yaml").write_text(edited)
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    ensure_dagster_home()
    ensure_dagster_home()  # a second call adds nothing more
    text = (dagster_home / "dagster.yaml").read_text()
    assert text.count("nux:") == 1 and text.count("run_queue:") == 1
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    assert instance.nux_enabled is False
    assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 2
    assert instance.telemetry_enabled is True
