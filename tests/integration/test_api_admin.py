"""Admin actions over HTTP: reload now and roll back, behind the admin scope. On a copy of the promoted shop, since
they move the registry's champion alias."""

import shutil

import pytest
from fastapi.testclient import TestClient

from orchestration.registry.promotion import BUNDLE_MODEL, HISTORY_TAG, current_champion, promote
from orchestration.registry.tracking import MLflowTracking
from orchestration.serving.api import create_app
from orchestration.serving.auth import ApiAccess

READER = "reader-token-0123456789"
ADMIN = "admin-token-01234567890"


@pytest.fixture
def admin_home(promoted, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(promoted.home, home, ignore=shutil.ignore_patterns("*.run-lock"))
    return home


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_admin_actions_need_the_admin_scope_and_swap_without_dropping_requests(admin_home):
    access = ApiAccess.from_environment({"RECSYS_API_TOKENS": f"{READER}:read,{ADMIN}:admin"})
    registry = MLflowTracking(home=str(admin_home)).client()
    first = current_champion(registry)
    champion = first["version"]
    # Other tests on the shared home may have promoted and rolled back versions before the copy: start from a
    # champion without earlier ones, so that there is nothing to roll back to.
    registry.set_registered_model_tag(BUNDLE_MODEL, HISTORY_TAG, "[]")
    with TestClient(create_app(str(admin_home), reload_seconds=3600, access=access)) as client:
        assert client.post("/admin/reload").status_code == 401
        refused = client.post("/admin/rollback", headers=_bearer(READER))
        assert refused.status_code == 403 and "admin" in refused.json()["detail"]

        unchanged = client.post("/admin/reload", headers=_bearer(ADMIN))
        assert unchanged.status_code == 200
        assert unchanged.json() | {"data_version": None} == {
            "swapped": False, "model_version": champion, "previous_version": champion, "data_version": None,
            "problem": None}
        alone = client.post("/admin/rollback", headers=_bearer(ADMIN))
        assert alone.status_code == 409 and "no previous one" in alone.json()["detail"]

        # A second version promoted: with reload_seconds=3600 nothing would notice for an hour, the admin's
        # reload serves it at once; the rollback restores version 1 in the registry and in the app.
        source = registry.get_model_version(BUNDLE_MODEL, str(champion))
        second = registry.create_model_version(BUNDLE_MODEL, source=source.source, run_id=source.run_id)
        promote(registry, int(second.version), first["metrics"], first["data_version"])
        assert client.get("/health").json()["model_version"] == champion
        reloaded = client.post("/admin/reload", headers=_bearer(ADMIN)).json()
        version = int(second.version)
        assert (reloaded["swapped"], reloaded["model_version"], reloaded["previous_version"]) == (True, version, champion)
        assert client.get("/recommendations/c1").json()["model_version"] == version

        back = client.post("/admin/rollback", headers=_bearer(ADMIN)).json()
        assert (back["swapped"], back["model_version"], back["previous_version"]) == (True, champion, version)
        assert client.get("/health").json()["model_version"] == champion
    assert current_champion(registry)["version"] == champion
    assert "rolled_back_at" in registry.get_model_version(BUNDLE_MODEL, second.version).tags
