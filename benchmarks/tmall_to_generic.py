"""Rewrite the Tmall 2014 brand log (``t_alibaba_data.csv``) as a folder in the documented generic format.

    python -m benchmarks.tmall_to_generic --data ../shared/data/tmall_2014_brand_log/t_alibaba_data.csv --out /tmp/tmall

A real clickstream: clicks, favourites, carts and purchases of 884 customers over four months, at brand level and day
resolution. The file's type codes become the shop's own event names (``click``, ``buy``, ``fav``, ``cart``), which
the generic ingest maps onto its behaviours (README, "Event types"). Rows repeating the same customer, brand, type and
day are real repeated activity (the day is the finest time the file has), so each such group becomes one event whose
``quantity`` is the number of rows: the counts survive and the ingest's duplicate check keeps them. The year, which
the file omits, is 2014 (its PROVENANCE). The catalogue is the brand ids, without any text.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from benchmarks.common import emit_json

TYPE_NAMES = {0: "click", 1: "buy", 2: "fav", 3: "cart"}  # the competition's codes
YEAR = 2014


def tmall_to_generic(raw: pd.DataFrame, where: str = "the file") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(interactions, items) in the generic layout; one interaction per (customer, brand, type, day)."""
    expected = ["user_id", "brand_id", "type", "visit_datetime"]
    if list(raw.columns) != expected:
        raise SystemExit(f"{where}: expected the columns {expected}, found {list(raw.columns)}")
    unknown = sorted(set(raw["type"]) - set(TYPE_NAMES))
    if unknown:
        raise SystemExit(f"{where}: column 'type' has codes {unknown}; expected {sorted(TYPE_NAMES)} "
                         f"({', '.join(f'{code} = {name}' for code, name in TYPE_NAMES.items())})")
    day = pd.to_datetime(str(YEAR) + "-" + raw["visit_datetime"].astype(str), format="%Y-%m-%d", errors="coerce")
    if day.isna().any():
        bad = raw.loc[day.isna(), "visit_datetime"].iloc[0]
        raise SystemExit(f"{where}: visit_datetime {bad!r} is not a month-day date like '6-4'")
    events = pd.DataFrame({"user_id": raw["user_id"].astype(str), "item_id": raw["brand_id"].astype(str),
                           "event_type": raw["type"].map(TYPE_NAMES), "day": day})
    counted = events.groupby(["user_id", "item_id", "event_type", "day"], sort=True).size().rename("quantity")
    interactions = counted.reset_index()
    interactions["timestamp"] = interactions.pop("day").dt.strftime("%Y-%m-%dT00:00:00")
    interactions = interactions.sort_values(["timestamp", "user_id", "item_id", "event_type"], kind="stable")
    interactions = interactions[["user_id", "item_id", "timestamp", "event_type", "quantity"]]
    items = pd.DataFrame({"item_id": sorted(interactions["item_id"].unique(), key=int), "title": ""})
    return interactions.reset_index(drop=True), items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="t_alibaba_data.csv")
    parser.add_argument("--out", required=True, help="folder to write interactions.csv.gz and items.csv into")
    args = parser.parse_args()
    interactions, items = tmall_to_generic(pd.read_csv(args.data), where=args.data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    interactions.to_csv(out / "interactions.csv.gz", index=False)
    items.to_csv(out / "items.csv", index=False)
    by_type = interactions.groupby("event_type")["quantity"].agg(["size", "sum"])
    print(f"{len(interactions):,} events ({int(interactions['quantity'].sum()):,} rows of the file) and "
          f"{len(items):,} brands written to {out}")
    print(by_type.to_string())
    emit_json({"interactions": len(interactions), "rows": int(interactions["quantity"].sum()), "items": len(items),
               "by_type": {name: int(n) for name, n in by_type["size"].items()}, "out": str(out)})


if __name__ == "__main__":
    main()
