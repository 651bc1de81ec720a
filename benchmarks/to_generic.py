"""Rewrite an Online Retail file (UCI or II layout) as a folder in the documented generic format.

    python -m benchmarks.to_generic --data ../shared/data/online_retail_ii_y2009_2010/online_retail_ii.parquet --out /tmp/orii-generic
    python -m benchmarks.sequential --protocol generic-loo --data /tmp/orii-generic

It gives the ``generic-loo`` protocol a real shop's log without a second copy of anyone's data in the repository.
Every row is written, dirty ones included (missing customers, cancellations with negative quantities): the
generic ingest, not this script, decides what to quarantine. The catalogue holds every stock code, titled with
its most frequent description (empty when it never had one).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from benchmarks.common import emit_json
from orchestration.ingest.schema import ORDER_LINES, map_columns


def _read(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def to_generic(raw: pd.DataFrame, where: str = "the file") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(interactions, items) in the generic layout, one interaction per raw row.

    The header is matched as ingest matches it (either Online Retail layout; ``where`` names the file in errors).
    """
    positions = map_columns([str(name) for name in raw.columns], ORDER_LINES, where)

    def text(column: str) -> pd.Series:
        return raw.iloc[:, positions[column]].astype("string").fillna("").str.strip()

    interactions = pd.DataFrame({
        "user_id": text("customer_id").str.removesuffix(".0"),
        "item_id": text("stock_code"),
        "timestamp": pd.to_datetime(raw.iloc[:, positions["invoice_date"]]).dt.strftime("%Y-%m-%dT%H:%M:%S"),
        "event_type": "purchase",
        "quantity": text("quantity"),
        "price": text("unit_price"),
        "session_id": text("invoice"),
    })
    descriptions = pd.DataFrame({"item_id": interactions["item_id"], "title": text("description")})
    counted = descriptions[descriptions["title"] != ""].value_counts().rename("n").reset_index()
    titles = counted.sort_values(["item_id", "n", "title"], ascending=[True, False, True]).drop_duplicates("item_id")
    items = pd.DataFrame({"item_id": sorted(set(interactions["item_id"]) - {""})})
    items = items.merge(titles[["item_id", "title"]], on="item_id", how="left").fillna({"title": ""})
    return interactions, items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="an Online Retail .csv(.gz) or .parquet file")
    parser.add_argument("--out", required=True, help="folder to write interactions.csv.gz and items.csv into")
    args = parser.parse_args()
    interactions, items = to_generic(_read(Path(args.data)), where=args.data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    interactions.to_csv(out / "interactions.csv.gz", index=False)
    items.to_csv(out / "items.csv", index=False)
    print(f"{len(interactions):,} interactions and {len(items):,} items written to {out}")
    emit_json({"interactions": len(interactions), "items": len(items), "out": str(out)})


if __name__ == "__main__":
    main()
