import json

import mlflow

from orchestration.defs.resources import MLflowResource


def test_runs_and_versions_live_under_recsys_home(recsys_home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a stray ./mlruns would appear here
    tracking = MLflowResource(home=str(recsys_home))
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"hidden_size": 8}))
    versions = []
    for _ in range(2):
        with tracking.start_run("sasrec", tags={"data_version": "abc"}) as run:
            mlflow.log_metric("val_ndcg_at_10", 0.5, step=0)
            versions.append(tracking.register_folder(run, folder, "sasrec", tags={"data_version": "abc"}))
    assert [int(v.version) for v in versions] == [1, 2]
    assert (recsys_home / "mlflow" / "mlflow.db").exists()
    assert not (tmp_path / "mlruns").exists()
    downloaded = mlflow.artifacts.download_artifacts("models:/sasrec/2", dst_path=str(tmp_path / "dl"))
    assert json.loads((tmp_path / "dl" / "config.json").read_text()) == {"hidden_size": 8}, downloaded
    assert str(recsys_home / "mlflow" / "artifacts") in versions[1].source


def test_each_home_gets_its_own_store_and_a_users_uri_wins(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    first, second = MLflowResource(home=str(tmp_path / "a")), MLflowResource(home=str(tmp_path / "b"))
    first.client()  # exports MLFLOW_TRACKING_URI, as mlflow.set_tracking_uri does
    assert second.resolved_tracking_uri() == f"sqlite:///{tmp_path / 'b' / 'mlflow' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert second.resolved_tracking_uri() == "http://tracking.example:5000"
