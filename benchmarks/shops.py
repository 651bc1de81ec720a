"""The whole pipeline on several shops, each in a fresh home: does every shop get a champion, and on what evidence?

    python -m benchmarks.shops --data /tmp/shop-a /tmp/shop-b --online-retail ../shared/data/online_retail/online_retail.csv.gz

Each ``--data`` folder is a shop in the documented generic format (``benchmarks.to_generic`` writes one from an
Online Retail file; ``--make-shops DIR`` writes a few from ../shared/data: a sample of customers, one year, no
text, one-off buyers). The synthetic shop runs too unless ``--no-synthetic``. Every shop runs as a user would run
it, ``recsys --home HOME materialize``, in its own process; the row is read back from the home afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from benchmarks.common import REPO_ROOT, SHARED_DATA, emit_json, machine
from orchestration.store.paths import recsys_paths
from orchestration.store.reports import table_exists

INPUTS = ("all", "purchases")
COLUMNS = ("name", "events", "customers", "items", "split_rule", "test_customers", "winner", "ndcg@10", "ci_low",
           "ci_high", "champion_version", "serves", "recommendations", "wall_s")


def run_shop(name: str, home: Path, source: str, data: Path | None, inputs: str = "all") -> dict[str, Any]:
    """``recsys materialize`` on one shop in ``home``; the summary row, with ``error`` when the run failed.
    ``inputs``: what the models read, every behaviour (``all``) or ``purchases``."""
    command = [sys.executable, "-m", "orchestration.apps.cli", "--home", str(home), "materialize", "--source", source,
               "--inputs", inputs]
    if data is not None:
        command += ["--data", str(data)]
    env = {**os.environ, "RECSYS_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"), "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    row: dict[str, Any] = {"name": name, "wall_s": round(time.perf_counter() - started, 1)}
    if completed.returncode != 0:
        row["error"] = (completed.stderr.strip().splitlines() or ["exit status %d" % completed.returncode])[-1]
    warehouse = home / "warehouse.duckdb"
    if warehouse.exists():
        with duckdb.connect(str(warehouse), read_only=True) as con:
            row.update(_read_back(con))
    split_file = recsys_paths(str(home)).artifacts.split_file
    if split_file.exists():
        from recmodels.splits import load_split

        stored = load_split(split_file)
        rule = stored.info.get("split_rule", {})
        days = f" {rule['test_days']}d" if rule.get("test_days") else ""
        row.update({"split_rule": f"{rule.get('rule', '?')}{days}",
                    "test_customers": len(stored.split.test)})
    return row


COMPARED_MODELS = ("sasrec", "sasrec+ranker")  # the models whose inputs change with --inputs


def compare_inputs(name: str, homes: Path) -> list[dict[str, Any]]:
    """Per model of ``COMPARED_MODELS``: test NDCG@10 reading every behaviour against purchases only, on the same
    test customers (the split evaluates purchases either way), with the paired difference's bootstrap interval."""
    from recmodels.stats import paired_comparison

    values = {}
    for inputs in INPUTS:
        with duckdb.connect(str(homes / f"{name}-{inputs}" / "warehouse.duckdb"), read_only=True) as con:
            values[inputs] = con.execute(
                "select model, customer, ndcg_10 from ml.customer_metrics where split = 'test' "
                "and variant = 'allowed'").df()
    rows = []
    for model in COMPARED_MODELS:
        per_customer = [values[inputs][values[inputs]["model"] == model].set_index("customer")["ndcg_10"]
                        for inputs in INPUTS]
        common = per_customer[0].index.intersection(per_customer[1].index).sort_values()
        compared = paired_comparison(per_customer[0][common].to_numpy(), per_customer[1][common].to_numpy())
        rows.append({"name": name, "model": model, "customers": len(common),
                     "ndcg@10_all": round(compared.challenger_mean, 4),
                     "ndcg@10_purchases": round(compared.reference_mean, 4),
                     "difference": round(compared.difference.mean, 4),
                     "difference_ci_low": round(compared.difference.low, 4),
                     "difference_ci_high": round(compared.difference.high, 4)})
    return rows


def _read_back(con) -> dict[str, Any]:
    row: dict[str, Any] = {}
    if table_exists(con, "marts.fct_interactions"):
        row["events"] = con.execute("select count(*) from marts.fct_interactions").fetchone()[0]
        row["customers"] = con.execute("select count(*) from marts.dim_users").fetchone()[0]
        row["items"] = con.execute("select count(*) from marts.dim_items").fetchone()[0]
    if table_exists(con, "ml.promotion_log"):
        last = con.execute("select version, promoted, serves, champion_after from ml.promotion_log "
                           "order by decided_at desc limit 1").df().iloc[0]
        row.update({"winner": last["serves"], "champion_version": None if pd.isna(last["champion_after"])
                    else int(last["champion_after"]), "promoted": bool(last["promoted"])})
        headline = con.execute("select value, ci_low, ci_high from ml.evaluation_metrics where model = ? and "
                               "split = 'test' and variant = 'allowed' and segment = 'all' and metric = 'ndcg' "
                               "and k = 10", [last["serves"]]).fetchone()
        if headline:
            row.update({"ndcg@10": round(headline[0], 4), "ci_low": round(headline[1], 4),
                        "ci_high": round(headline[2], 4)})
        served = con.execute("select serves from ml.promotion_log where promoted order by decided_at desc limit 1"
                             ).fetchone()
        row["serves"] = served[0] if served else None
    if table_exists(con, "ml.user_recommendations"):
        row["recommendations"] = con.execute("select count(*) from ml.user_recommendations").fetchone()[0]
        row["customers_recommended"] = con.execute(
            "select count(distinct user_id) from ml.user_recommendations").fetchone()[0]
    return row


def make_shops(out: Path, seed: int = 0) -> list[Path]:
    """Generic-format shops cut from ../shared/data's Online Retail II sheet: 400 sampled customers over the
    whole year, the last 8 weeks of everyone, 1,500 customers without any item text, a shop where 80% of
    the customers are kept to their first basket (one-off buyers), and 300 customers kept to at most three
    baskets each, drawn at random over the year (customers who rarely return within any window)."""
    from benchmarks.to_generic import _read, to_generic

    source = SHARED_DATA / "online_retail_ii_y2009_2010" / "online_retail_ii.parquet"
    if not source.exists():
        raise SystemExit(f"{source} is missing: --make-shops cuts its shops from it (see its PROVENANCE.md)")
    interactions, items = to_generic(_read(source), where=str(source))
    customers = pd.Series(sorted(set(interactions["user_id"]) - {""}))
    times = pd.to_datetime(interactions["timestamp"])

    def sample(n: int, salt: int) -> set[str]:
        return set(customers.sample(n=min(n, len(customers)), random_state=seed + salt))

    first_basket = interactions.groupby("user_id")["session_id"].transform("min")
    one_off = sample(int(0.8 * len(customers)), 4)
    rare = interactions[interactions["user_id"].isin(sample(300, 5))]
    baskets = rare[["user_id", "session_id"]].drop_duplicates().sample(frac=1.0, random_state=seed + 6)
    kept = baskets.groupby("user_id").head(3)["session_id"]
    shops = {
        "orii-400-customers": (interactions[interactions["user_id"].isin(sample(400, 1))], items),
        "orii-last-8-weeks": (interactions[times >= times.max() - pd.Timedelta(weeks=8)], items),
        "orii-1500-no-text": (interactions[interactions["user_id"].isin(sample(1500, 3))],
                              items.assign(title="")),
        "orii-one-off-buyers": (interactions[~interactions["user_id"].isin(one_off)
                                             | (interactions["session_id"] == first_basket)], items),
        "orii-300-rare-returns": (rare[rare["session_id"].isin(set(kept))], items),
    }
    folders = []
    for name, (shop_interactions, shop_items) in shops.items():
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        shop_interactions.to_csv(folder / "interactions.csv.gz", index=False)
        shop_items[shop_items["item_id"].isin(shop_interactions["item_id"])].to_csv(folder / "items.csv", index=False)
        folders.append(folder)
        print(f"{folder}: {len(shop_interactions):,} interactions", flush=True)
    return folders


def _print(rows: list[dict[str, Any]]) -> None:
    frame = pd.DataFrame(rows).reindex(columns=[*COLUMNS, "error"])
    if frame["error"].isna().all():
        frame = frame.drop(columns="error")
    with pd.option_context("display.width", 250, "display.max_columns", None, "display.max_colwidth", 60):
        print(frame.to_string(index=False))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="*", default=[], help="shop folders in the generic format")
    parser.add_argument("--online-retail", help="an Online Retail file, run as its own shop")
    parser.add_argument("--no-synthetic", action="store_true", help="leave out the built-in synthetic shop")
    parser.add_argument("--make-shops", metavar="DIR", help="first write test shops cut from ../shared/data into DIR "
                                                            "and run them too")
    parser.add_argument("--homes", help="keep each shop's RECSYS_HOME under this folder (default: a temporary one)")
    parser.add_argument("--inputs", choices=(*INPUTS, "both"), default="all",
                        help="what the models read: every behaviour a shop records (default) or purchases only; "
                             "both: each shop twice, compared on the same test customers")
    args = parser.parse_args(argv)
    shops: list[tuple[str, str, Path | None]] = [(Path(d).name, "generic", Path(d)) for d in args.data]
    if args.make_shops:
        shops += [(folder.name, "generic", folder) for folder in make_shops(Path(args.make_shops))]
    if args.online_retail:
        shops.append(("online-retail", "online_retail", Path(args.online_retail)))
    if not args.no_synthetic:
        shops.append(("synthetic", "synthetic", None))
    for _, _, data in shops:
        if data is not None and not data.exists():
            parser.error(f"{data} does not exist")
    rows, comparisons = [], []
    runs = INPUTS if args.inputs == "both" else (args.inputs,)
    with tempfile.TemporaryDirectory(prefix="recsys-shops-") as scratch:
        homes = Path(args.homes or scratch)
        for name, source, data in shops:
            for inputs in runs:
                print(f"== {name} ({source}{'' if data is None else ', ' + str(data)}), inputs {inputs}", flush=True)
                home = homes / (f"{name}-{inputs}" if len(runs) > 1 else name)
                rows.append({**run_shop(name, home, source, data, inputs), "inputs": inputs})
                print(json.dumps(rows[-1], default=str), flush=True)
            if len(runs) > 1 and not any("error" in row for row in rows[-2:]):
                comparisons += compare_inputs(name, homes)
    print()
    _print(rows)
    result = {"benchmark": "shops", "machine": machine(), "shops": rows}
    if comparisons:
        print("\nEvery behaviour against purchases only, paired on the same test customers (95% bootstrap):")
        print(pd.DataFrame(comparisons).to_string(index=False))
        result["inputs_comparison"] = comparisons
    emit_json(result)


if __name__ == "__main__":
    main()
