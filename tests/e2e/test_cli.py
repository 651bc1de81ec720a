"""The whole graph from the two command lines users have: Dagster's and ours."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd

from orchestration.apps.cli import main

REPO_ROOT = Path(__file__).resolve().parents[2]


def _tiny_generic_shop(folder: Path) -> Path:
    folder.mkdir(parents=True)
    rows = []
    for user in range(8):
        for step in range(4):
            # A purchase a month: the models' 30-day test and validation windows then hold every customer once.
            rows.append({"user_id": f"user-{user}", "item_id": f"sku-{(user + step) % 5}",
                         "timestamp": 1_700_000_000 + user * 1000 + step * 30 * 86_400, "event_type": "purchase",
                         "quantity": 1})
    rows.append({"user_id": "", "item_id": "sku-1", "timestamp": 1_700_000_000, "event_type": "purchase", "quantity": 1})
    pd.DataFrame(rows).to_csv(folder / "interactions.csv", index=False)
    pd.DataFrame(
        {"item_id": [f"sku-{i}" for i in range(5)], "title": ["Red mug", "Blue mug", "", "Oak lantern", "Tote bag"]}
    ).to_csv(folder / "items.csv", index=False)
    return folder


def test_dagster_cli_materializes_the_graph(recsys_home, tmp_path):
    data = _tiny_generic_shop(tmp_path / "shop")
    env = {**os.environ, "RECSYS_SOURCE": "generic", "RECSYS_DATA": str(data)}
    (recsys_home / "dagster").mkdir(parents=True)
    completed = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m", "orchestration.definitions", "--select", "*"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "nanobind: leaked" not in completed.stderr  # DuckDB's objects are gone before the interpreter ends
    with duckdb.connect(str(recsys_home / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from marts.fct_interactions").fetchone()[0] == 32
        assert con.execute("select reason from marts.quarantine").fetchall() == [("missing_user",)]
        assert con.execute("select count(*) from marts.dim_items where not has_text").fetchone()[0] == 1


def test_recsys_cli_materialize_then_summary(recsys_home, tmp_path, capsys):
    data = _tiny_generic_shop(tmp_path / "shop")
    assert main(["materialize", "--source", "generic", "--data", str(data)]) == 0
    assert main(["summary"]) == 0
    out = capsys.readouterr().out
    assert "marts.fct_interactions" in out and "32 rows" in out
    assert main(["quarantine", "--reason", "missing_user"]) == 0
    assert "missing_user" in capsys.readouterr().out


def test_a_catalogue_without_text_is_a_warning_not_a_failure(recsys_home, tmp_path, capsys):
    data = _tiny_generic_shop(tmp_path / "shop")
    pd.DataFrame({"item_id": [f"sku-{i}" for i in range(5)], "title": [""] * 5}).to_csv(data / "items.csv", index=False)
    # A ninth customer who only browsed, in the shop's own words: two clicks 10 s apart (one view once collapsed)
    # and a "tap", the shop's name for a view, declared on the command line.
    browsing = pd.DataFrame({"user_id": "browser", "item_id": ["sku-2", "sku-2", "sku-3"],
                             "timestamp": [1_700_000_000, 1_700_000_010, 1_700_000_500],
                             "event_type": ["click", "click", "tap"], "quantity": 1})
    interactions = pd.read_csv(data / "interactions.csv")
    pd.concat([interactions, browsing]).to_csv(data / "interactions.csv", index=False)
    assert main(["materialize", "--source", "generic", "--data", str(data), "--event-types", "tap=view"]) == 0
    captured = capsys.readouterr()
    assert "warning: dim_items:" in captured.err and "has_text" in captured.err
    assert "check failed" not in captured.err and " warnings" in captured.out
    with duckdb.connect(str(recsys_home / "warehouse.duckdb"), read_only=True) as con:
        views = con.execute("select count(*), sum(quantity) from marts.fct_interactions where event_type = 'view'")
        assert views.fetchone() == (2, 3)  # the two clicks are one view of quantity 2, the tap another
        assert con.execute("select sum(collapsed_rows) from marts.reconciliation").fetchone()[0] == 1
        # Every known customer is recommended, the one who only browsed too: the whole five-item catalogue, the
        # two items they looked at said to be viewed.
        assert con.execute("select count(distinct user_id) from ml.user_recommendations").fetchone()[0] == 9
        browser = dict(con.execute(
            "select item_id, explanation from ml.user_recommendations where user_id in (select user_id from "
            "marts.fct_interactions group by user_id having bool_and(event_type = 'view'))").fetchall())
        assert len(browser) == 5 and browser["sku-2"] == browser["sku-3"] == "viewed"
