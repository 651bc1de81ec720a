"""Ingest + dbt on a real export or a large synthetic shop: wall time, peak memory and the reconciliation.

    python -m benchmarks.ingest --data ../shared/data/online_retail/online_retail.csv.gz
    python -m benchmarks.ingest --protocol synthetic --users 400000      # about 10M order lines
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import dagster as dg
import duckdb

from benchmarks.common import SHARED_DATA, emit_json, machine, peak_rss_mib, print_table
from orchestration.apps.runner import materialize
from orchestration.defs.resources import DataSourceResource, WarehouseResource
from orchestration.ingest.sources import materialize_synthetic_shop, synthetic_config
from orchestration.store.paths import recsys_paths

PROTOCOLS = ("online_retail", "generic", "synthetic")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(SHARED_DATA / "online_retail" / "online_retail.csv.gz"))
    parser.add_argument("--protocol", choices=PROTOCOLS, default="online_retail", help="the data source kind")
    parser.add_argument("--users", type=int, default=400_000, help="synthetic: customers")
    parser.add_argument("--items", type=int, default=4_000, help="synthetic: products")
    parser.add_argument("--days", type=int, default=365, help="synthetic: days of history")
    parser.add_argument("--home", help="state folder to use (default: a temporary one)")
    args = parser.parse_args()

    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="recsys-bench-"))
    figures: dict = {"protocol": args.protocol, "home": str(home), **machine()}
    if args.protocol == "synthetic":
        overrides = {"n_users": args.users, "n_items": args.items, "n_days": args.days}
        started = time.perf_counter()
        shop = materialize_synthetic_shop(recsys_paths(home).ensure().sources_dir, synthetic_config(overrides))
        figures["generate_s"] = round(time.perf_counter() - started, 1)
        figures["data"] = str(shop.order_lines)
        source = DataSourceResource(
            source="synthetic", synthetic_users=args.users, synthetic_items=args.items, synthetic_days=args.days
        )
    else:
        figures["data"] = args.data
        source = DataSourceResource(source=args.protocol, data=args.data)

    resources = {"warehouse": WarehouseResource(home=str(home)), "data_source": source}
    instance = dg.DagsterInstance.ephemeral()
    for step, selection in (("ingest", "group:ingest"), ("dbt_and_checks", "group:transforms")):
        started = time.perf_counter()
        materialize(selection, resources=resources, instance=instance, log_level="WARNING", stdout_log=home / "dbt.log")
        figures[f"{step}_s"] = round(time.perf_counter() - started, 1)
    figures.update(peak_rss_mib())

    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        raw, kept, duplicates, rejected, balanced = con.execute(
            """select sum(raw_rows), sum(kept_rows), sum(duplicate_rows), sum(rejected_rows), bool_and(is_balanced)
               from marts.reconciliation where target_table <> 'items'"""
        ).fetchone()
        reasons = dict(con.execute("select reason, count(*) from marts.quarantine group by 1 order by 2 desc").fetchall())
        fct = con.execute("select count(*) from marts.fct_interactions").fetchone()[0]
    figures.update(
        raw_rows=int(raw), kept_rows=int(kept), duplicate_rows=int(duplicates), rejected_rows=int(rejected),
        balanced="yes" if balanced else "NO", fct_interactions=int(fct), rejected_by_reason=reasons,
        rows_per_s=round(int(raw) / (figures["ingest_s"] + figures["dbt_and_checks_s"])),
    )
    print_table(
        [(name, figures[name]) for name in (
            "data", "raw_rows", "kept_rows", "duplicate_rows", "rejected_rows", "balanced", "fct_interactions",
            "ingest_s", "dbt_and_checks_s", "rows_per_s", "peak_rss_mib", "peak_child_rss_mib")]
        + [(f"rejected: {reason}", count) for reason, count in reasons.items()],
        f"Ingest + dbt benchmark ({args.protocol})",
    )
    emit_json(figures)


if __name__ == "__main__":
    main()
