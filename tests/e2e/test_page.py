"""The API's page in a real browser: a demo customer's recommendations appear with their titles.

Needs a Chromium binary (Debian: ``apt-get install chromium``; or ``RECSYS_CHROMIUM=/path/to/chrome``); skipped
without one. The same code writes the README's screenshot:
``python -m orchestration.apps.screenshot --page web-page docs/images/web-page.png``.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from orchestration.apps.headless import api_server, find_chromium
from orchestration.apps.screenshot import capture_web_page
from orchestration.serving.api import create_app


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = find_chromium()
    if not binary:
        pytest.skip("no Chromium binary on PATH (apt-get install chromium, or set RECSYS_CHROMIUM)")
    pytest.importorskip("websockets.sync.client", reason="needs websockets (comes with dagster-webserver)")
    return binary


def test_the_page_shows_a_customers_recommendations(chromium, promoted, tmp_path):
    customer = _first_customer(promoted.home)  # the shop's own id, as a person types it into the page
    with TestClient(create_app(str(promoted.home), reload_seconds=3600)) as client:
        expected = [item["title"] for item in client.get(f"/recommendations/{customer}?k=10").json()["items"]]
    with api_server(promoted.home) as url:
        capture = capture_web_page(url, tmp_path / "page.png", customer, chromium=chromium)
    assert capture.shown, "no recommended title appeared on the page"
    assert list(capture.shown) == expected[: len(capture.shown)]
    assert (tmp_path / "page.png").stat().st_size > 10_000


def _first_customer(home) -> str:
    import duckdb

    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return con.execute("select min(customer_id) from raw.order_lines where trim(customer_id) <> ''").fetchone()[0]
