"""Who may call the API: tokens and scopes from the settings, 401 and 403 with JSON bodies, bounded bodies, CORS
closed unless configured, loopback without tokens. On the shared promoted shop's champion."""

import pytest
from fastapi.testclient import TestClient

from orchestration.serving.api import ERROR_RESPONSES, create_app
from orchestration.serving.auth import AccessConfigError, ApiAccess, serve_host
from orchestration.serving.limits import MAX_BODY_BYTES

READER = "reader-token-0123456789"
WRITER = "events-token-0123456789"
ADMIN = "admin-token-01234567890"
SETTINGS = {"RECSYS_API_TOKENS": f"{READER}:read,{WRITER}:events, {ADMIN}:admin+read+events",
            "RECSYS_API_READS": "token"}


@pytest.fixture(scope="module")
def guarded(promoted):
    access = ApiAccess.from_environment({**SETTINGS, "RECSYS_API_CORS_ORIGINS": "https://shop.example"})
    with TestClient(create_app(str(promoted.home), reload_seconds=3600, access=access)) as client:
        yield client


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _example(status: int) -> dict:
    return ERROR_RESPONSES[status]["content"]["application/json"]["example"]


def test_reads_need_a_token_with_the_read_scope_when_configured(guarded):
    missing = guarded.get("/popular")
    assert missing.status_code == 401 and missing.json() == _example(401)
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = guarded.get("/popular", headers=_bearer("not-a-token-at-all-xx"))
    assert wrong.status_code == 401 and wrong.json() == {"detail": "The bearer token is not valid."}
    basic = guarded.get("/popular", headers={"Authorization": f"Basic {READER}"})
    assert basic.status_code == 401
    scoped = guarded.get("/popular", headers=_bearer(WRITER))
    assert scoped.status_code == 403 and scoped.json() == _example(403)
    for token in (READER, ADMIN):
        assert guarded.get("/popular", headers=_bearer(token)).status_code == 200
    # A session is a read too; health and the page stay open for probes and people.
    assert guarded.post("/recommendations/session", json={"items": ["x"]}).status_code == 401
    assert guarded.get("/health").status_code == 200 and guarded.get("/").status_code == 200


def test_bodies_are_capped_whether_declared_or_streamed(guarded):
    oversized = b"x" * (MAX_BODY_BYTES + 1)
    declared = guarded.post("/recommendations/session", content=oversized, headers=_bearer(READER))
    assert declared.status_code == 413 and declared.json() == _example(413)

    def chunks():  # no Content-Length: the cap counts the body as it arrives
        for _ in range(MAX_BODY_BYTES // 65_536 + 2):
            yield b" " * 65_536

    streamed = guarded.post("/recommendations/session", content=chunks(),
                            headers={**_bearer(READER), "content-type": "application/json"})
    assert streamed.status_code == 413 and streamed.json() == _example(413)


def test_cors_is_open_only_to_the_configured_origins(guarded, promoted):
    allowed = guarded.options("/popular", headers={"Origin": "https://shop.example",
                                                   "Access-Control-Request-Method": "GET"})
    assert allowed.headers.get("access-control-allow-origin") == "https://shop.example"
    other = guarded.get("/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    with TestClient(create_app(str(promoted.home), reload_seconds=3600, access=ApiAccess())) as closed:
        answer = closed.get("/popular", headers={"Origin": "https://shop.example"})
        assert answer.status_code == 200 and "access-control-allow-origin" not in answer.headers


def test_settings_are_validated_without_echoing_a_token():
    one = ApiAccess.from_environment({"RECSYS_API_TOKEN": ADMIN})
    assert one.scopes_of(ADMIN) == {"read", "events", "admin"} and one.scopes_of(READER) is None
    assert not one.reads_need_token and not ApiAccess.from_environment({}).configured
    bad = [
        ({"RECSYS_API_TOKENS": f"{READER}:read+write"}, "entry 1: unknown scope 'write'"),
        ({"RECSYS_API_TOKENS": f"{ADMIN}:admin,{READER}"}, "entry 2 has no scopes"),
        ({"RECSYS_API_TOKEN": "short-secret"}, "at least 16 characters"),
        ({"RECSYS_API_READS": "closed", "RECSYS_API_TOKEN": ADMIN}, "RECSYS_API_READS is 'closed'"),
        ({"RECSYS_API_READS": "token"}, "needs a token"),
    ]
    for settings, message in bad:
        with pytest.raises(AccessConfigError, match=message) as error:
            ApiAccess.from_environment(settings)
        assert READER not in str(error.value) and ADMIN not in str(error.value)


def test_without_a_token_the_api_listens_on_loopback_only():
    open_access = ApiAccess()
    assert serve_host("127.0.0.1", open_access) == ("127.0.0.1", None)
    assert serve_host("::1", open_access) == ("::1", None)
    host, notice = serve_host("0.0.0.0", open_access)
    assert host == "127.0.0.1" and "No API token is configured" in notice and "0.0.0.0" in notice
    assert serve_host("0.0.0.0", ApiAccess.from_environment({"RECSYS_API_TOKEN": ADMIN})) == ("0.0.0.0", None)
