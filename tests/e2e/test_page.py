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


_SESSION_ITEMS = "[...document.querySelectorAll('#session-recommendations li')]"


def test_the_page_recommends_for_an_anonymous_sessions_views_and_carts(chromium, promoted):
    from orchestration.apps.headless import open_browser
    from orchestration.apps.screenshot import _type_into

    with TestClient(create_app(str(promoted.home), reload_seconds=3600)) as client:
        viewed, carted = (item["item_id"] for item in client.get("/popular?k=2").json()["items"])
        events = [{"item_id": viewed, "event_type": "view"}, {"item_id": carted, "event_type": "cart"}]
        expected = client.post("/recommendations/session?include_seen=true", json={"events": events, "k": 8}).json()
    with api_server(promoted.home) as url, open_browser(chromium, 1400, 1400, 1) as browser:
        browser.navigate(f"{url}/")
        browser.wait_for("the page's script", "document.readyState === 'complete'")
        browser.evaluate("document.getElementById('session-seen').checked = true")
        _type_into(browser, "#session-item", viewed)  # Enter adds it, as a view (the default)
        browser.wait_for("the first event", "document.querySelectorAll('#session-events li').length === 1")
        browser.evaluate("document.getElementById('session-type').value = 'cart'")
        _type_into(browser, "#session-item", carted)
        browser.wait_for("the session's recommendations",
                         "document.querySelectorAll('#session-events li').length === 2 && "
                         f"{_SESSION_ITEMS}.length === 8 && "
                         "document.getElementById('session-status').textContent.startsWith('An anonymous') && "
                         # The answer to both events, not the one to the view alone still on the page.
                         f"{_SESSION_ITEMS}.some(li => li.querySelector('.detail').textContent === 'In your cart')")
        shown = browser.evaluate(f"{_SESSION_ITEMS}.map(li => [li.querySelector('.title').textContent, "
                                 "li.querySelector('.detail').textContent])")
        kinds = browser.evaluate("[...document.querySelectorAll('#session-events li')].map(li => li.dataset.event)")
    assert kinds == ["view", "cart"]
    assert shown == [[item["title"], item["reason"]] for item in expected["items"]]
    reasons = dict(zip((item["item_id"] for item in expected["items"]), (r for _, r in shown)))
    assert reasons.get(carted) == "In your cart" and reasons.get(viewed) == "You viewed this"
