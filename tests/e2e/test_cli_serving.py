"""`recsys recommend / similar / explain` against a promoted champion: readable tables, JSON, and exit 1 when
there is nothing to answer with."""

import json
import re

import duckdb
import pytest

from orchestration.apps.cli import main
from orchestration.store.privacy import DEV_PSEUDONYMIZATION_KEY, pseudonymize


@pytest.fixture(scope="module")
def home(promoted):
    """A home whose registry has a champion (version 1), shared with other modules (conftest.promoted)."""
    return promoted.home


@pytest.fixture(scope="module")
def batch(home):
    """ml.user_recommendations (k = 5) with each customer's raw shop id beside the pseudonym."""
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        table = con.execute("select * from ml.user_recommendations order by user_id, rank").df()
        raw = con.execute("select distinct customer_id from raw.order_lines where trim(customer_id) <> ''").fetchall()
    pseudonyms = {pseudonymize(r, DEV_PSEUDONYMIZATION_KEY): r for (r,) in raw}
    return table.assign(raw_id=table["user_id"].map(pseudonyms))


def _rows(out: str) -> tuple[list[str], list[list[str]]]:
    """(header lines, table rows split into cells) of a printed table: cells are two or more spaces apart."""
    lines = out.rstrip("\n").splitlines()
    rule = next(i for i, line in enumerate(lines) if re.fullmatch(r"[- ]+", line))
    return lines[:rule - 1], [re.split(r"\s{2,}", line.strip()) for line in lines[rule + 1:]]


def test_recommend_prints_a_customers_batch_recommendations(home, batch, capsys):
    customer = batch.dropna(subset=["raw_id"]).iloc[0]
    expected = batch[batch["user_id"] == customer["user_id"]]
    assert main(["--home", str(home), "recommend", "--user", customer["raw_id"], "--k", "5"]) == 0
    header, rows = _rows(capsys.readouterr().out)
    assert re.fullmatch(rf"Customer {customer['raw_id']}: known, \d+ purchases; two-stage ranking\.", header[0])
    assert header[1].startswith("Model version 1, data as of ")
    assert [row[0] for row in rows] == ["1", "2", "3", "4", "5"]
    assert [row[1] for row in rows] == expected["item_id"].tolist()
    assert [row[-2] for row in rows] == [f"{s:.4f}" for s in expected["score"]]
    assert [row[-1] for row in rows] == expected["reason"].tolist()

    assert main(["--home", str(home), "recommend", "--user", customer["raw_id"], "--k", "5", "--json"]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1
    answer = json.loads(out)
    assert answer["known_user"] and answer["model_version"] == 1
    assert [item["item_id"] for item in answer["items"]] == expected["item_id"].tolist()


def test_unknown_customers_and_sessions_say_what_they_got(home, batch, capsys):
    assert main(["--home", str(home), "recommend", "--user", "no-such-customer", "--k", "3"]) == 3  # unknown: popular items, and a code scripts can tell apart
    header, rows = _rows(capsys.readouterr().out)
    assert header[0].startswith("Customer no-such-customer: unknown, popular items instead (fallback:")
    assert len(rows) == 3 and all(row[-1] == "Popular now" for row in rows)

    items = batch["item_id"].drop_duplicates().head(3).tolist()
    assert main(["--home", str(home), "recommend", "--items", items[0], "NOT-AN-ITEM", *items[1:], "--k", "4"]) == 0
    captured = capsys.readouterr()
    header, rows = _rows(captured.out)
    assert header[0] == "Session of 4 items (1 unknown, 0 known by description only); two-stage ranking."
    assert len(rows) == 4 and "ignored unknown items: NOT-AN-ITEM" in captured.err


def test_similar_and_explain(home, batch, capsys):
    top = batch.dropna(subset=["raw_id"]).iloc[0]
    assert main(["--home", str(home), "similar", "--item", top["item_id"], "--k", "3"]) == 0
    out = capsys.readouterr().out
    header, rows = _rows(out)
    assert header[0].startswith(f"Items similar to {top['item_id']} ")
    assert out.splitlines()[3].split() == ["rank", "item_id", "title", "score", "co_purchase", "text_cosine"]
    assert [row[0] for row in rows] == ["1", "2", "3"] and top["item_id"] not in {row[1] for row in rows}

    assert main(["--home", str(home), "explain", "--user", top["raw_id"], "--item", top["item_id"]]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Customer {top['raw_id']} (known) and item {top['item_id']} ")
    fields = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in out.splitlines()[3:] if "  " in line)
    assert fields["explanation"] == top["explanation"] and fields["reason"] == top["reason"]
    assert fields["candidate"].startswith("yes, rank 1, score ")

    assert main(["--home", str(home), "explain", "--user", top["raw_id"], "--item", top["item_id"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rank"] == 1


@pytest.mark.parametrize("command", [["similar", "--item", "NOT-AN-ITEM"],
                                     ["explain", "--user", "c1", "--item", "NOT-AN-ITEM"]])
def test_an_unknown_item_exits_1_with_a_message(home, capsys, command):
    assert main(["--home", str(home), *command]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "unknown item" in captured.err and "NOT-AN-ITEM" in captured.err


def test_a_home_without_champion_exits_1_with_a_message(recsys_home, capsys, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    commands = (["recommend", "--user", "c1"], ["similar", "--item", "i1"], ["explain", "--user", "c1", "--item", "i1"])
    for command in commands:
        assert main(["--home", str(recsys_home), *command]) == 1
        captured = capsys.readouterr()
        assert captured.out == "" and "has no champion yet" in captured.err
