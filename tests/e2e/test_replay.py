"""The automation loop without a human: a synthetic shop's log replayed in drops through the sensors."""

import dataclasses
import json

import pandas as pd

from orchestration.apps.replay import parse_every, plan_drops, read_log, write_drops
from orchestration.ingest.synthetic import SyntheticShopConfig, write_synthetic_shop

RUN_CONFIG = {"ops": {"user_sequences": {"config": {"test_days": 14, "validation_days": 14}},
                      "sasrec_model": {"config": {"epochs": 3, "hidden_size": 16}}}}


def test_plan_drops_covers_the_log_in_consecutive_windows():
    times = pd.Series(pd.to_datetime(["2024-01-03 10:00", "2024-01-09 23:59", "2024-01-10 00:00", None]))
    windows = plan_drops(times, parse_every("7d"))
    assert windows == [(pd.Timestamp("2024-01-03"), pd.Timestamp("2024-01-10")),
                       (pd.Timestamp("2024-01-10"), pd.Timestamp("2024-01-17"))]
    # ``until`` is exclusive and cuts the last window; ``initial`` sets the first window's length.
    assert plan_drops(times, parse_every("7d"), until=pd.Timestamp("2024-01-12"), initial=parse_every("2d")) == [
        (pd.Timestamp("2024-01-03"), pd.Timestamp("2024-01-05")), (pd.Timestamp("2024-01-05"), pd.Timestamp("2024-01-12"))]


def test_drops_account_for_every_row_and_corrupt_only_the_chosen_one(tmp_path):
    shop = write_synthetic_shop(tmp_path / "shop", dataclasses.replace(SyntheticShopConfig(), n_users=40, n_items=20,
                                                                      n_days=30, seed=3))
    log = read_log(shop.order_lines)
    frame, column = log.rows, log.date_column
    drops = list(write_drops(log, parse_every("10d"), tmp_path / "drops", bad_drop=-1))
    # Unparseable dates and malformed records ride in the first drop: every record is handed to ingest.
    assert sum(d.rows for d, _ in drops) == len(frame) + len(log.malformed) and len(log.malformed) >= 1
    assert [d.corrupted for d, _ in drops] == [False] * (len(drops) - 1) + [True]
    last = pd.read_csv(drops[-1][1], dtype=str, keep_default_na=False)
    original = frame.loc[pd.to_datetime(frame[column], errors="coerce", format="mixed") >= drops[-1][0].start]
    prices = pd.to_numeric(original["UnitPrice"], errors="coerce").dropna()
    assert (pd.to_numeric(last["UnitPrice"], errors="coerce").dropna().to_numpy() >= prices.min() * 1e7 - 1).all()


def test_replay_ingests_every_drop_retrains_promotes_and_refuses_the_bad_drop(tmp_path, monkeypatch, capsys):
    from orchestration.apps.replay import replay

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    shop = write_synthetic_shop(tmp_path / "shop", dataclasses.replace(SyntheticShopConfig(), n_users=120,
                                                                      n_items=60, n_days=63, seed=7))
    home = tmp_path / "home"
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    # Two drops: eight weeks of history, then a corrupted last week (each drop costs a whole pipeline run).
    summary = replay(shop.order_lines, "7d", home, bad_drop=-1, initial="56d", run_config=RUN_CONFIG)
    out = capsys.readouterr().out.strip().splitlines()
    assert json.loads(out[-1]) == summary
    log = "\n".join(out)
    assert summary["drops"] == 2 and summary["ingested"] == 2, log
    # Every drop adds more than 10% new purchases, so the retrain sensor asks for a retrain after each one,
    # and each retrain ends in a decision. (On a shop this small, buy-again is hard to beat: whether the
    # good drop promotes depends on the data; the real-data replay in BENCHMARKS.md shows promotions.)
    assert summary["retrains"] == 2 and summary["promotions"] + summary["refusals"] == 2, log
    bad = next(i for i, line in enumerate(out) if "[corrupted]" in line)
    assert "refused" in out[bad] and "fct_interactions:great_expectations" in out[bad]
    assert "Blocking checks failed: dim_items:great_expectations, fct_interactions:great_expectations." in log
    assert summary["corrupted_drops"] == [2] and len(summary["ndcg_10_trend"]) == 2
