"""Screenshots of the Dagster UI on this project, taken by a headless Chromium.

Starts ``dagster-webserver`` on ``workspace.yaml`` with a throw-away ``RECSYS_HOME``/``DAGSTER_HOME``,
opens the global asset lineage with every group expanded, waits until the graph has drawn every asset
of the project, and saves a PNG. The browser is Debian's ``chromium`` (``apt-get install chromium``),
driven over the Chrome DevTools Protocol with the ``websockets`` package that ``dagster-webserver``
already installs (through ``uvicorn[standard]``); nothing else is needed.

    python -m orchestration.apps.screenshot docs/images/asset-graph.png --width 1600 --height 1000
"""

from __future__ import annotations

import argparse
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


def _wait(what: str, check, timeout: float, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise ScreenshotError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def _stop_session(process: subprocess.Popen, grace: float = 15) -> None:
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


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def dagster_webserver(
    port: int | None = None, home: Path | None = None, timeout: float = 120
) -> Iterator[Webserver]:
    """``dagster-webserver -w workspace.yaml`` on 127.0.0.1, its code location loaded; stopped on exit."""
    with contextlib.ExitStack() as stack:
        if home is None:
            home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="recsys-ui-")))
        dagster_home = home / "dagster"
        dagster_home.mkdir(parents=True, exist_ok=True)
        (dagster_home / "dagster.yaml").write_text(INSTANCE_YAML)
        port = port or free_port()
        env = {**os.environ, "RECSYS_HOME": str(home), "DAGSTER_HOME": str(dagster_home),
               "DAGSTER_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1"}
        executable = Path(sys.executable).parent / "dagster-webserver"
        command = [str(executable) if executable.exists() else "dagster-webserver",
                   "-w", str(REPO_ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)]
        log = home / "dagster-webserver.log"
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
                return _answers(f"{server.url}/server_info")

            _wait("dagster-webserver to answer", up, timeout)

            def loaded() -> bool:
                entries = server.graphql(LOCATIONS_QUERY)["workspaceOrError"].get("locationEntries") or []
                return bool(entries) and all(entry["loadStatus"] == "LOADED" for entry in entries)

            _wait("the code location to load", loaded, timeout)
            yield server
        finally:
            _stop_session(process)


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
            _wait("Chromium's DevTools port",
                  lambda: active_port.exists() and active_port.read_text().strip(), timeout)
            port = int(active_port.read_text().split()[0])

            def pages() -> list[dict]:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as response:
                    return [target for target in json.load(response) if target.get("type") == "page"]

            targets = _wait("Chromium's first page", pages, timeout)
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
        return _wait(what, lambda: self.evaluate(expression), timeout)

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
        _stop_session(self.process)
        self._profile.cleanup()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------------------------------------ asset graph


def asset_graph_url(server_url: str, groups: list[str]) -> str:
    """The global asset lineage (Dagster 1.13's "Lineage" page) with the given groups expanded."""
    expanded = ",".join(f"global@global:{group}" for group in sorted(groups))
    return f"{server_url}/asset-groups?{urllib.parse.urlencode({'expanded': expanded}, safe='@:,')}"


# Names the graph has drawn: its nodes are HTML inside the SVG's <foreignObject>s (long names are shortened
# with an ellipsis in the middle, so count them and look for the short ones).
_DRAWN_NAMES = """[...document.querySelectorAll('foreignObject [class*="assetName"]')]
  .map(e => e.textContent.trim())"""
_HIDE_ASSET_SIDEBAR = """(() => {
  const icon = document.querySelector('button [aria-label="panel_show_right"]');
  if (icon) icon.closest('button').click();
  return !!icon;
})()"""
# Where the graph sits: its scale and offset in the viewport, its size, and the part of the viewport that the
# toolbar (search bar) does not cover.
_GRAPH_GEOMETRY = """(() => {
  const svg = document.querySelector('foreignObject').closest('svg');
  const content = svg.parentElement, viewport = content.parentElement;
  const m = new DOMMatrix(getComputedStyle(content).transform);
  const r = viewport.getBoundingClientRect();
  const bar = document.querySelector('input[placeholder^="Search and filter"]');
  const top = bar ? Math.max(r.top, bar.getBoundingClientRect().bottom + 8) : r.top;
  return {scale: m.a, x: m.e, y: m.f, width: +svg.getAttribute('width'), height: +svg.getAttribute('height'),
          left: r.left, top: r.top, viewWidth: r.width, viewHeight: r.height, freeTop: top - r.top};
})()"""


@dataclass
class Capture:
    png: Path
    url: str
    html: str
    assets: dict[str, str]
    drawn: list[str]


def _center_graph(browser: Chromium, attempts: int = 3) -> None:
    """Drag the graph to the middle of the free part of the viewport, as a user would (cosmetic only)."""
    for _ in range(attempts):
        g = browser.evaluate(_GRAPH_GEOMETRY)
        dx = (g["viewWidth"] - g["width"] * g["scale"]) / 2 - g["x"]
        dy = g["freeTop"] + (g["viewHeight"] - g["freeTop"] - g["height"] * g["scale"]) / 2 - g["y"]
        if abs(dx) < 2 and abs(dy) < 2:
            return
        x, y = g["left"] + 8, g["top"] + g["viewHeight"] / 2  # the left edge: background, never a node
        mouse = {"button": "left", "buttons": 1}
        browser.send("Input.dispatchMouseEvent",
                     {"type": "mousePressed", "x": x, "y": y, "clickCount": 1, **mouse})
        for step in range(1, 11):
            browser.send("Input.dispatchMouseEvent",
                         {"type": "mouseMoved", "x": x + dx * step / 10, "y": y + dy * step / 10, **mouse})
        browser.send("Input.dispatchMouseEvent", {"type": "mouseReleased", "x": x + dx, "y": y + dy,
                                                  "clickCount": 1, "button": "left", "buttons": 0})
        time.sleep(0.3)


def capture_asset_graph(server: Webserver, png: Path, width: int = 1600, height: int = 1000,
                        scale: float = 1, chromium: str | None = None, timeout: float = 60) -> Capture:
    """Open the asset graph with every group expanded, wait until every asset is drawn, save the PNG.

    The PNG is ``width*scale`` x ``height*scale`` pixels (``scale=2`` for a sharper image of the same page).
    """
    binary = chromium or find_chromium()
    if not binary:
        raise ScreenshotError("no Chromium found (apt-get install chromium, or set RECSYS_CHROMIUM)")
    assets = server.assets()
    url = asset_graph_url(server.url, sorted(set(assets.values())))
    with Chromium(binary, width, height, scale=scale) as browser:
        # Room for the graph: the main navigation collapsed (a per-browser setting) before the page loads ...
        browser.navigate(f"{server.url}/server_info")
        loaded = "location.pathname === '/server_info' && document.readyState === 'complete'"
        browser.wait_for("the server_info page", loaded, timeout)
        browser.evaluate("localStorage.setItem('dagster-nav-collapsed', 'true'), true")
        browser.navigate(url)
        browser.wait_for("every asset on the graph", f"{_DRAWN_NAMES}.length >= {len(assets)}", timeout)
        # ... and the asset tree beside the graph closed, the graph then moved to the middle.
        if browser.evaluate(_HIDE_ASSET_SIDEBAR):
            time.sleep(0.5)
            with contextlib.suppress(ScreenshotError):
                _center_graph(browser)
        time.sleep(0.5)
        browser.screenshot(png)
        drawn = browser.evaluate(_DRAWN_NAMES)
        html = browser.html()
    return Capture(png=Path(png), url=url, html=html, assets=assets, drawn=sorted(drawn))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", default=str(REPO_ROOT / "docs" / "images" / "asset-graph.png"))
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--scale", type=float, default=1,
                        help="device pixels per CSS pixel (2: a sharper PNG)")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    with dagster_webserver(port=args.port) as server:
        capture = capture_asset_graph(server, Path(args.output), args.width, args.height, args.scale)
    print(f"{capture.png}: {len(capture.drawn)} assets drawn from {capture.url}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
