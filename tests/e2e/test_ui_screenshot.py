"""A headless Chromium opens the Dagster UI on the project and captures the asset graph.

Needs a Chromium binary (Debian: ``apt-get install chromium``; or ``RECSYS_CHROMIUM=/path/to/chrome``);
skipped without one. The same code writes the README's screenshot:
``python -m orchestration.apps.screenshot docs/images/asset-graph.png``.
"""

from __future__ import annotations

import pytest

from orchestration.apps.headless import dagster_webserver, find_chromium
from orchestration.apps.screenshot import capture_asset_graph

WIDTH, HEIGHT = 1600, 1000
# Short enough to be drawn in full (long names are shortened in the middle), one from each end of the graph.
EXPECTED_ON_GRAPH = {"loads", "item_embeddings", "fct_interactions", "sasrec_model", "ranker_model"}


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = find_chromium()
    if not binary:
        pytest.skip("no Chromium binary on PATH (apt-get install chromium, or set RECSYS_CHROMIUM)")
    pytest.importorskip("websockets.sync.client", reason="needs websockets (comes with dagster-webserver)")
    return binary


def test_asset_graph_screenshot(chromium, tmp_path):
    png = tmp_path / "asset-graph.png"
    with dagster_webserver(home=tmp_path / "recsys-home", timeout=90) as server:
        capture = capture_asset_graph(server, png, WIDTH, HEIGHT, chromium=chromium, timeout=60)

    # The code location loaded every asset, and the page drew every one of them as a node of the graph.
    assert EXPECTED_ON_GRAPH <= set(capture.assets), sorted(capture.assets)
    assert len(capture.drawn) == len(capture.assets), (capture.drawn, sorted(capture.assets))
    assert EXPECTED_ON_GRAPH <= set(capture.drawn), capture.drawn
    assert "Global asset lineage" in capture.html
    assert "Join the Dagster community" not in capture.html

    # A real PNG of the requested size, with a drawing in it rather than a blank or one-colour page.
    from PIL import Image

    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size == (WIDTH, HEIGHT)
        colours = image.convert("RGB").getcolors(maxcolors=WIDTH * HEIGHT)
    assert len(colours) > 200, f"only {len(colours)} colours: an empty page?"
