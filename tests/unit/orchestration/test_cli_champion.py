"""`recsys champion` / `recsys rollback`: one JSON object on stdout and exit 0, or a stderr message and 1."""

from __future__ import annotations

import json

import pytest

from orchestration.apps import cli
from orchestration.registry.promotion import BUNDLE_MODEL, promote
from orchestration.registry.tracking import MLflowTracking


@pytest.fixture
def client(recsys_home, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return MLflowTracking(home=str(recsys_home)).client()


def promote_two_versions(client, home) -> None:
    experiment = client.create_experiment("cli-test", artifact_location=(home / "artifacts-test").as_uri())
    client.create_registered_model(BUNDLE_MODEL)
    for number in (1, 2):
        run = client.create_run(experiment)
        bundle = home / f"bundle-{number}"
        bundle.mkdir(parents=True)
        client.create_model_version(BUNDLE_MODEL, source=bundle.as_uri(), run_id=run.info.run_id)
        promote(client, number, {"ndcg@10": 0.1 * number}, f"data-{number}")


def test_champion_and_rollback_print_json(client, recsys_home, capsys):
    promote_two_versions(client, recsys_home)
    capsys.readouterr()

    assert cli.main(["champion"]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1
    champion = json.loads(out)
    assert champion["version"] == 2 and champion["model"] == BUNDLE_MODEL
    assert champion["metrics"] == {"ndcg@10": 0.2}

    assert cli.main(["rollback"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == 1
    assert cli.main(["champion"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == 1

    assert cli.main(["rollback"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "no previous one" in captured.err


def test_without_a_champion_both_exit_1_with_a_message(client, capsys):
    assert cli.main(["champion"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "No champion" in captured.err
    assert cli.main(["rollback"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "no champion" in captured.err


def test_home_option_chooses_the_store(client, recsys_home, tmp_path, capsys, monkeypatch):
    promote_two_versions(client, recsys_home)
    # main() exports --home into RECSYS_HOME; setting it through monkeypatch restores it afterwards.
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "elsewhere"))
    capsys.readouterr()
    assert cli.main(["--home", str(recsys_home), "champion"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == 2
    assert cli.main(["--home", str(tmp_path / "empty"), "champion"]) == 1
