"""Screenshots of the project's web pages, taken by a headless Chromium: the README's pictures.

``asset-graph`` starts ``dagster-webserver`` on ``workspace.yaml`` with a throw-away ``RECSYS_HOME``/
``DAGSTER_HOME``, opens the global asset lineage with every group expanded, waits until the graph has drawn every
asset of the project, and saves a PNG. The others need a home that ``make demo`` has filled (``--home``, default
``$RECSYS_HOME`` or ./.recsys): ``web-page`` is the serving API's page with a customer's recommendations,
``mlflow-experiment`` the MLflow UI's runs of the experiment, ``evaluation-plots`` the Plots tab of the
``evaluation_metrics`` asset in the Dagster UI. The browser is Debian's ``chromium`` (``apt-get install
chromium``), driven over the Chrome DevTools Protocol with the ``websockets`` package that ``dagster-webserver``
already installs (through ``uvicorn[standard]``); nothing else is needed.

    python -m orchestration.apps.screenshot docs/images/asset-graph.png --width 1600 --height 1000
    python -m orchestration.apps.screenshot docs/images/web-page.png --page web-page --customer 10025
    python -m orchestration.apps.screenshot docs/images/mlflow-experiment.png --page mlflow-experiment
    python -m orchestration.apps.screenshot docs/images/evaluation-metrics-plots.png --page evaluation-plots
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from orchestration.apps.headless import (
    REPO_ROOT,
    Chromium,
    ScreenshotError,
    Webserver,
    api_server,
    dagster_webserver,
    mlflow_ui,
    open_browser,
    state_home,
    wait_until,
)

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
    assets = server.assets()
    url = asset_graph_url(server.url, sorted(set(assets.values())))
    with open_browser(chromium, width, height, scale) as browser:
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


# --------------------------------------------------------------------------------- the API and MLflow UI


@dataclass
class PageCapture:
    png: Path
    url: str
    html: str
    shown: list[str]  # what the capture waited for: recommended titles, run names, plot titles


def _type_into(browser: Chromium, selector: str, value: str) -> None:
    """Focus an input, clear it, type ``value`` as key presses and press Enter, as a person would."""
    browser.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.focus(); "
                     "e.value = ''; return true; })()")
    browser.send("Input.insertText", {"text": value})
    for kind in ("rawKeyDown", "char", "keyUp"):
        browser.send("Input.dispatchKeyEvent", {"type": kind, "key": "Enter", "code": "Enter", "text": "\r",
                                                "windowsVirtualKeyCode": 13})


_RECOMMENDED_TITLES = "[...document.querySelectorAll('#customer-recommendations li .title')].map(e => e.textContent)"
_SIMILAR_TITLES = "[...document.querySelectorAll('#similar-items li .title')].map(e => e.textContent)"


def capture_web_page(api_url: str, png: Path, customer: str, item: str | None = None, width: int = 1400,
                     height: int = 1200, scale: float = 1, chromium: str | None = None, timeout: float = 60
                     ) -> PageCapture:
    """Open the API's page, type ``customer`` into the customer box (and ``item`` into the item box), wait until
    the recommendations are drawn, save the PNG. ``shown``: the recommended titles."""
    with open_browser(chromium, width, height, scale) as browser:
        browser.navigate(f"{api_url}/")
        browser.wait_for("the champion and popular items",
                         "document.querySelectorAll('#popular-items li').length > 0 && "
                         "document.querySelectorAll('#champion-metrics tbody tr').length > 0", timeout)
        _type_into(browser, "#customer-id", customer)
        browser.wait_for("the recommendations", f"{_RECOMMENDED_TITLES}.length > 0", timeout)
        if item is not None:
            _type_into(browser, "#item-id", item)
            browser.wait_for("the similar items", f"{_SIMILAR_TITLES}.length > 0", timeout)
        browser.evaluate("window.scrollTo(0, 0), true")
        time.sleep(0.3)
        browser.screenshot(png)
        return PageCapture(Path(png), browser.evaluate("location.href"), browser.html(),
                           browser.evaluate(_RECOMMENDED_TITLES))


def capture_mlflow_experiment(mlflow_url: str, png: Path, experiment: str = "recsys", width: int = 1600,
                              height: int = 1000, scale: float = 1, chromium: str | None = None,
                              timeout: float = 90) -> PageCapture:
    """The MLflow UI's table of the experiment's runs, once every run's name is drawn. ``shown``: the names."""
    query = urllib.parse.urlencode({"experiment_name": experiment})
    with urllib.request.urlopen(f"{mlflow_url}/api/2.0/mlflow/experiments/get-by-name?{query}", timeout=30) as r:
        experiment_id = json.load(r)["experiment"]["experiment_id"]
    search = {"experiment_ids": [experiment_id], "max_results": 1000}
    request = urllib.request.Request(f"{mlflow_url}/api/2.0/mlflow/runs/search", data=json.dumps(search).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        names = sorted({run["info"]["run_name"] for run in json.load(r).get("runs", [])})
    # The runs beside their metric charts: the view that compares them.
    url = f"{mlflow_url}/#/experiments/{experiment_id}/runs?compareRunsMode=CHART"
    drawn = (f"[...new Set({json.dumps(names)})].filter(name => !!document.body && "
             "document.body.innerText.includes(name))")
    with open_browser(chromium, width, height, scale) as browser:
        # The assistant panel, which opens by itself on a first visit, closed before the page loads.
        browser.navigate(f"{mlflow_url}/health")
        browser.wait_for("the health page", "document.readyState === 'complete'", timeout)
        browser.evaluate("localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true'), "
                         "localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false'), true")
        browser.navigate(url)
        browser.wait_for("every run name", f"{drawn}.length === {len(names)}", timeout)
        browser.wait_for("the metric charts", "document.querySelectorAll('svg .main-svg, .js-plotly-plot').length > 0"
                         " || document.querySelectorAll('canvas').length > 0", timeout)
        time.sleep(2)  # the charts animate in
        browser.screenshot(png)
        return PageCapture(Path(png), url, browser.html(), browser.evaluate(drawn))


# The Dagster UI's first-visit dialog over a home whose dagster.yaml leaves it on: skipped, as a person would.
_SKIP_NUX = """(() => {
  const skip = [...document.querySelectorAll('button')].find(b => b.textContent.trim() === 'Skip');
  if (skip) skip.click();
  return !!skip;
})()"""
_TABS = "[...document.querySelectorAll('[role=\"tab\"], [role=\"tablist\"] a, [role=\"tablist\"] button')]"
# Each plot's title: the first line of the smallest box around its canvas that has text.
_PLOTS = """[...document.querySelectorAll('canvas')].map(c => {
  let box = c.parentElement;
  while (box && !box.innerText.trim()) box = box.parentElement;
  return box ? box.innerText.trim().split('\\n')[0] : '';
})"""


# Dagster 1.13 draws an asset's numeric metadata over its materializations in the Overview tab: the Metadata
# section's "Plots" toggle (the separate Plots tab of older releases is gone).
_PLOTS_TOGGLE = """(() => {
  const toggle = [...document.querySelectorAll('button')].find(b => b.textContent.trim() === 'Plots');
  if (toggle) { toggle.scrollIntoView({block: 'start'}); toggle.click(); }
  return !!toggle;
})()"""


def capture_asset_plots(server: Webserver, png: Path, asset: str = "evaluation_metrics", width: int = 1600,
                        height: int = 1000, scale: float = 1, chromium: str | None = None, timeout: float = 90
                        ) -> PageCapture:
    """The plots of ``asset``'s numeric metadata over its materializations, in the Dagster UI's asset Overview.
    ``shown`` has the plots' titles; it is empty, and the page captured as it is, when the asset has none."""
    url = f"{server.url}/assets/{asset}"
    with open_browser(chromium, width, height, scale) as browser:
        browser.navigate(f"{server.url}/server_info")
        browser.wait_for("the server_info page",
                         "location.pathname === '/server_info' && document.readyState === 'complete'", timeout)
        browser.evaluate("localStorage.setItem('dagster-nav-collapsed', 'true'), true")
        browser.navigate(url)
        tabs = f"{_TABS}.map(e => e.textContent.trim())"
        browser.wait_for("the asset's tabs", f"{tabs}.includes('Events')", timeout)
        with contextlib.suppress(ScreenshotError):  # the dialog comes a moment after the page, or never
            wait_until("the first-visit dialog", lambda: browser.evaluate(_SKIP_NUX), 5)
            time.sleep(0.5)
        with contextlib.suppress(ScreenshotError):  # no toggle: the asset has no numeric metadata
            browser.wait_for("the metadata's Plots toggle", _PLOTS_TOGGLE, 20)
            browser.wait_for("the plots", "document.querySelectorAll('canvas').length > 0", timeout)
        time.sleep(1.5)  # charts animate in
        browser.screenshot(png)
        return PageCapture(Path(png), url, browser.html(), browser.evaluate(_PLOTS))


# ------------------------------------------------------------------------------------------------- main


PAGES = ("asset-graph", "web-page", "mlflow-experiment", "evaluation-plots")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", default=None,
                        help="the PNG (default docs/images/<the page's picture>.png)")
    parser.add_argument("--page", choices=PAGES, default="asset-graph")
    parser.add_argument("--home", default=None,
                        help="state folder that `make demo` filled (default $RECSYS_HOME or ./.recsys); "
                             "asset-graph uses a throw-away one")
    parser.add_argument("--customer", default=None, help="web-page: the customer id typed in (default: the "
                                                         "demo shop's example customer)")
    parser.add_argument("--item", default=None, help="web-page: an item id typed into the item box")
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--scale", type=float, default=1,
                        help="device pixels per CSS pixel (2: a sharper PNG)")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    images = REPO_ROOT / "docs" / "images"
    pictures = {"asset-graph": "asset-graph.png", "web-page": "web-page.png",
                "mlflow-experiment": "mlflow-experiment.png", "evaluation-plots": "evaluation-metrics-plots.png"}
    png = Path(args.output or images / pictures[args.page])
    size = {"width": args.width or (1400 if args.page == "web-page" else 1600),
            "height": args.height or (1200 if args.page == "web-page" else 1000), "scale": args.scale}
    if args.page == "asset-graph":
        with dagster_webserver(port=args.port) as server:
            capture = capture_asset_graph(server, png, **size)
        print(f"{capture.png}: {len(capture.drawn)} assets drawn from {capture.url}")
        return 0
    if args.page == "web-page":
        from orchestration.serving.api import EXAMPLE_CUSTOMER

        with api_server(args.home, args.port) as url:
            shown = capture_web_page(url, png, args.customer or EXAMPLE_CUSTOMER, args.item, **size)
    elif args.page == "mlflow-experiment":
        from orchestration.registry.tracking import MLflowTracking

        with mlflow_ui(args.home, args.port) as url:
            shown = capture_mlflow_experiment(url, png, MLflowTracking().experiment, **size)
    else:
        with dagster_webserver(port=args.port, home=state_home(args.home)) as server:
            shown = capture_asset_plots(server, png, **size)
    print(f"{shown.png}: {shown.url} showing {shown.shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
