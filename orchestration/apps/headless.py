"""Headless processes for the pictures and the browser tests: a Chromium driven over the DevTools Protocol
(with the ``websockets`` package that ``dagster-webserver`` already installs), ``dagster-webserver`` on
``workspace.yaml``, the serving API and the MLflow UI, each on 127.0.0.1 in its own process session and stopped
with everything it started."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# The instance of the screenshot: no telemetry, and no "Join the Dagster community" dialog over the graph.
INSTANCE_YAML = """\
telemetry:
  enabled: false
nux:
  enabled: false
"""
ASSETS_QUERY = "{ assetNodes { assetKey { path } groupName } }"
LOCATIONS_QUERY = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"


class ScreenshotError(RuntimeError):
    """The webserver or the browser did not get where it should, in time."""


def find_chromium() -> str | None:
    """The Chromium binary: ``$RECSYS_CHROMIUM`` if set, else the first of the usual names on PATH."""
    explicit = os.environ.get("RECSYS_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else shutil.which(explicit)
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(what: str, check, timeout: float, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise ScreenshotError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def stop_session(process: subprocess.Popen, grace: float = 15) -> None:
    """Stop a process started with ``start_new_session=True`` and all it started (its process group)."""

    def group_alive() -> bool:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        process.poll()  # reaps the leader once it exits
        if process.returncode is not None and not group_alive():
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=grace)


# --------------------------------------------------------------------------------------------- webserver


@dataclass
class Webserver:
    url: str
    process: subprocess.Popen
    log: Path

    def graphql(self, query: str) -> dict:
        request = urllib.request.Request(
            f"{self.url}/graphql", data=json.dumps({"query": query}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            payload = json.load(response)
        if payload.get("errors"):
            raise ScreenshotError(f"GraphQL errors: {payload['errors']}")
        return payload["data"]

    def assets(self) -> dict[str, str]:
        """Every asset of the loaded code location: ``name -> group`` (the key's last part, as drawn)."""
        nodes = self.graphql(ASSETS_QUERY)["assetNodes"]
        return {node["assetKey"]["path"][-1]: node["groupName"] for node in nodes}

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def dagster_webserver(
    port: int | None = None, home: Path | None = None, timeout: float = 120
) -> Iterator[Webserver]:
    """``dagster-webserver -w workspace.yaml`` on 127.0.0.1, its code location loaded; stopped on exit. A home's
    own ``dagster.yaml`` is kept (its runs are what a screenshot of it shows); a new one gets INSTANCE_YAML."""
    with contextlib.ExitStack() as stack:
        if home is None:
            home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="recsys-ui-")))
        home = Path(home)
        dagster_home = home / "dagster"
        dagster_home.mkdir(parents=True, exist_ok=True)
        if not (dagster_home / "dagster.yaml").exists():
            (dagster_home / "dagster.yaml").write_text(INSTANCE_YAML)
        port = port or free_port()
        env = {**os.environ, "RECSYS_HOME": str(home), "DAGSTER_HOME": str(dagster_home),
               "DAGSTER_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1"}
        executable = Path(sys.executable).parent / "dagster-webserver"
        command = [str(executable) if executable.exists() else "dagster-webserver",
                   "-w", str(REPO_ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)]
        log = home / "logs" / "dagster-webserver.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as log_file:
            # Its own session, so that stopping it also stops the code server it spawns (and nothing else).
            process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log_file,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        server = Webserver(f"http://127.0.0.1:{port}", process, log)
        try:
            def up() -> bool:
                if process.poll() is not None:
                    raise ScreenshotError(
                        f"dagster-webserver exited ({process.returncode}):\n{server.log_tail()}")
                return answers(f"{server.url}/server_info")

            wait_until("dagster-webserver to answer", up, timeout)

            def loaded() -> bool:
                entries = server.graphql(LOCATIONS_QUERY)["workspaceOrError"].get("locationEntries") or []
                return bool(entries) and all(entry["loadStatus"] == "LOADED" for entry in entries)

            wait_until("the code location to load", loaded, timeout)
            yield server
        finally:
            stop_session(process)


# ---------------------------------------------------------------------------------------------- browser


class Chromium:
    """A headless Chromium and one page of it, driven over the DevTools Protocol."""

    def __init__(self, binary: str, width: int, height: int, scale: float = 1, timeout: float = 30):
        from websockets.sync.client import connect  # installed with dagster-webserver (uvicorn[standard])

        self.width, self.height, self.scale = width, height, scale
        self._profile = tempfile.TemporaryDirectory(prefix="recsys-chromium-")
        self._stack = contextlib.ExitStack()
        command = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                   "--hide-scrollbars", "--no-first-run", "--no-default-browser-check", "--mute-audio",
                   "--disable-extensions", "--disable-background-networking", "--disable-sync",
                   "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                   f"--user-data-dir={self._profile.name}", f"--window-size={width},{height}", "about:blank"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        try:
            active_port = Path(self._profile.name) / "DevToolsActivePort"
            wait_until("Chromium's DevTools port",
                       lambda: active_port.exists() and active_port.read_text().strip(), timeout)
            port = int(active_port.read_text().split()[0])

            def pages() -> list[dict]:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as response:
                    return [target for target in json.load(response) if target.get("type") == "page"]

            targets = wait_until("Chromium's first page", pages, timeout)
            self._socket = self._stack.enter_context(
                connect(targets[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=timeout))
        except BaseException:
            self.close()
            raise
        self._ids = itertools.count(1)
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": scale, "mobile": False})

    def send(self, method: str, params: dict | None = None, timeout: float = 60) -> dict:
        message_id = next(self._ids)
        self._socket.send(json.dumps({"id": message_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(self._socket.recv(timeout=max(0.1, deadline - time.monotonic())))
            if reply.get("id") == message_id:  # events and stale replies are skipped
                if "error" in reply:
                    raise ScreenshotError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate",
                           {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            error = result["exceptionDetails"].get("text")
            raise ScreenshotError(f"JavaScript error: {error} in {expression[:200]}")
        return result["result"].get("value")

    def navigate(self, url: str) -> None:
        self.send("Page.navigate", {"url": url})

    def wait_for(self, what: str, expression: str, timeout: float = 60):
        return wait_until(what, lambda: self.evaluate(expression), timeout)

    def html(self) -> str:
        return self.evaluate("document.documentElement.outerHTML")

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False})["data"]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stack.close()
        stop_session(self.process)
        self._profile.cleanup()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def server_process(name: str, command: list[str], env: dict[str, str], log: Path, ready: str, timeout: float
                   ) -> Iterator[subprocess.Popen]:
    """``command`` in its own session, logging to ``log``, until ``ready`` (a URL) answers 200; stopped on exit."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as log_file:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        def up() -> bool:
            if process.poll() is not None:
                raise ScreenshotError(f"{name} exited ({process.returncode}):\n"
                                      f"{log.read_text(errors='replace')[-3000:]}")
            return answers(ready)

        wait_until(f"{name} to answer", up, timeout)
        yield process
    finally:
        stop_session(process)


def state_home(home: Path | str | None) -> Path:
    from orchestration.store.paths import recsys_paths

    return Path(recsys_paths(None if home is None else str(home)).home)


@contextlib.contextmanager
def api_server(home: Path | str | None = None, port: int | None = None, timeout: float = 180) -> Iterator[str]:
    """The serving API over ``home``'s champion on 127.0.0.1 (the URL), once it serves one; stopped on exit."""
    home, port = state_home(home), port or free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "uvicorn", "--factory", "orchestration.serving.api:create_app",
               "--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, "RECSYS_HOME": str(home)}
    with server_process("the serving API", command, env, home / "logs" / "screenshot-api.log", f"{url}/health", timeout):
        yield url


@contextlib.contextmanager
def mlflow_ui(home: Path | str | None = None, port: int | None = None, timeout: float = 180) -> Iterator[str]:
    """``mlflow server`` on ``home``'s tracking store, on 127.0.0.1 (the URL); stopped on exit."""
    from orchestration.registry.tracking import MLflowTracking

    home, port = state_home(home), port or free_port()
    url = f"http://127.0.0.1:{port}"
    executable = Path(sys.executable).parent / "mlflow"
    command = [str(executable) if executable.exists() else "mlflow", "server", "--host", "127.0.0.1",
               "--port", str(port), "--workers", "1",
               "--backend-store-uri", MLflowTracking(home=str(home)).resolved_tracking_uri()]
    env = {**os.environ, "MLFLOW_ENABLE_TELEMETRY": "false", "DO_NOT_TRACK": "1"}
    with server_process("mlflow server", command, env, home / "logs" / "screenshot-mlflow.log", f"{url}/health", timeout):
        yield url


def open_browser(chromium: str | None, width: int, height: int, scale: float) -> Chromium:
    binary = chromium or find_chromium()
    if not binary:
        raise ScreenshotError("no Chromium found (apt-get install chromium, or set RECSYS_CHROMIUM)")
    return Chromium(binary, width, height, scale=scale)
