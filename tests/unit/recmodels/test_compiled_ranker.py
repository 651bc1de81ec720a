"""The ranker's models compiled to machine code score exactly as LightGBM does, or are not used."""

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from recmodels.ranking import LambdaRanker, RankerConfig
from recmodels.ranking import compiled as compiled_module
from recmodels.ranking.compiled import CompiledModel, compile_model, probe_rows

FAST = RankerConfig(n_estimators=60, n_models=2, min_data_in_leaf=5, early_stopping_rounds=60)


def _planted(seed, n_rows=120, per_row=15):
    """Candidates labelled by x > 0.5 after noise, with missing values and zeros the trees must route."""
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(n_rows), per_row)
    x = rng.random(len(rows))
    labels = (x + rng.normal(0, 0.1, len(rows)) > 0.5).astype(int)
    frame = pd.DataFrame({"row": rows, "x": x, "z": rng.random(len(rows)),
                          "sparse": np.where(rng.random(len(rows)) < 0.3, np.nan, rng.integers(0, 4, len(rows)))})
    frame.loc[frame.index % 7 == 0, "z"] = 0.0
    return frame, labels


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    frame, labels = _planted(0)
    folder = tmp_path_factory.mktemp("ranker")
    LambdaRanker(FAST).fit(frame, labels, frame["row"].to_numpy(), ["x", "z", "sparse"]).save(folder)
    return folder


def test_a_compiled_ranker_scores_every_row_as_lightgbm_to_the_bit(saved, tmp_path):
    reference = LambdaRanker.load(saved)
    ranker = LambdaRanker.load(saved)
    assert ranker.compile(tmp_path / "cache") == FAST.n_models
    assert all(isinstance(twin, CompiledModel) for twin in ranker.compiled_)
    test, _ = _planted(2)
    rows = np.vstack([test[["x", "z", "sparse"]].to_numpy(np.float64),
                      *(probe_rows(booster) for booster in reference.boosters_)])
    np.testing.assert_array_equal(ranker.score_matrix(rows), reference.score_matrix(rows))
    assert np.array_equal(ranker.score(test), reference.score(test))
    # One machine-code file per model, kept only after it passed the check.
    assert len(list((tmp_path / "cache").glob("*.o"))) == FAST.n_models
    assert not list((tmp_path / "cache").glob("*.partial"))


def test_a_kept_compilation_is_read_back_without_compiling(saved, tmp_path, monkeypatch):
    LambdaRanker.load(saved).compile(tmp_path)
    import lleaves.compiler

    def no_compiler(*args, **kwargs):
        raise AssertionError("compiled again")

    monkeypatch.setattr(lleaves.compiler, "compile_to_module", no_compiler)
    again = LambdaRanker.load(saved)
    assert again.compile(tmp_path) == FAST.n_models
    test, _ = _planted(3)
    np.testing.assert_array_equal(again.score(test), LambdaRanker.load(saved).score(test))


def test_a_compiled_model_that_scores_differently_is_refused_and_remembered(saved, tmp_path, monkeypatch):
    honest = CompiledModel.predict
    monkeypatch.setattr(CompiledModel, "predict", lambda self, x: honest(self, x) + 1e-12)
    ranker = LambdaRanker.load(saved)
    assert ranker.compile(tmp_path) == 0 and ranker.compiled_ == [None] * FAST.n_models
    assert not list(tmp_path.glob("*.o")) and len(list(tmp_path.glob("*.differs"))) == FAST.n_models
    test, _ = _planted(4)
    np.testing.assert_array_equal(ranker.score(test), LambdaRanker.load(saved).score(test))  # LightGBM's own
    # Remembered: the next load does not compile it again to refuse it again.
    monkeypatch.setattr(compiled_module, "probe_rows", lambda booster: pytest.fail("checked again"))
    assert LambdaRanker.load(saved).compile(tmp_path) == 0


def test_only_a_loaded_ranker_compiles(saved):
    frame, labels = _planted(0)
    fitted = LambdaRanker(FAST).fit(frame, labels, frame["row"].to_numpy(), ["x", "z", "sparse"])
    with pytest.raises(ValueError, match="only a loaded ranker compiles"):
        fitted.compile()


def test_without_lleaves_lightgbm_scores(saved, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def without_lleaves(name, *args, **kwargs):
        if name == "lleaves":
            raise ImportError("no lleaves here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_lleaves)
    booster = LambdaRanker.load(saved).boosters_[0]
    assert compile_model(saved / "ranker-0.txt", booster, None) is None


def test_probe_rows_sit_on_and_beside_each_threshold_with_missing_and_zero():
    x = np.repeat([[0.25], [0.75]], 50, axis=0)
    y = np.r_[np.zeros(50), np.ones(50)]
    booster = lgb.train({"objective": "regression", "num_leaves": 2, "min_data_in_leaf": 1, "verbose": -1},
                        lgb.Dataset(x, y), num_boost_round=1)
    threshold = booster.dump_model()["tree_info"][0]["tree_structure"]["threshold"]
    assert 0.25 <= threshold < 0.75
    values = set(probe_rows(booster, n_rows=400)[:, 0].tolist())
    expected = {threshold, np.nextafter(threshold, -np.inf), np.nextafter(threshold, np.inf), 0.0, -1e30, 1e30}
    assert expected <= values and any(np.isnan(v) for v in values)


def test_a_folder_that_cannot_be_written_still_compiles_for_the_process(saved, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    ranker = LambdaRanker.load(saved)
    assert ranker.compile(blocker / "cache") == FAST.n_models
    test, _ = _planted(5)
    np.testing.assert_array_equal(ranker.score(test), LambdaRanker.load(saved).score(test))


def test_a_damaged_kept_compilation_is_compiled_again(saved, tmp_path):
    LambdaRanker.load(saved).compile(tmp_path)
    for kept in tmp_path.glob("*.o"):
        kept.write_bytes(b"not machine code")
    ranker = LambdaRanker.load(saved)
    assert ranker.compile(tmp_path) == FAST.n_models
    test, _ = _planted(6)
    np.testing.assert_array_equal(ranker.score(test), LambdaRanker.load(saved).score(test))
    assert all(kept.read_bytes() != b"not machine code" for kept in tmp_path.glob("*.o"))
    assert len(list(tmp_path.glob("*.sha256"))) == FAST.n_models
