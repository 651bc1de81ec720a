"""The `recsys` command line: materialize assets and inspect what the warehouse holds."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from orchestration.resources import SOURCE_KINDS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsys", description=__doc__)
    parser.add_argument("--home", help="state folder (default $RECSYS_HOME or ./.recsys)")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("materialize", help="materialize assets in-process (default: all) with their checks")
    run.add_argument("--select", help="Dagster asset selection, e.g. 'group:ingest' or 'key:fct_interactions+'")
    run.add_argument("--source", choices=SOURCE_KINDS, help="data source (default $RECSYS_SOURCE or synthetic)")
    run.add_argument("--data", help="file or folder to ingest (default $RECSYS_DATA)")

    commands.add_parser("summary", help="print loads, reconciliation, quarantine reasons and mart sizes")

    quarantine = commands.add_parser("quarantine", help="show quarantined raw rows")
    quarantine.add_argument("--reason", help="only this reason code")
    quarantine.add_argument("--limit", type=int, default=20)

    commands.add_parser("champion", help="print the registry's current champion as JSON")
    commands.add_parser("rollback", help="restore the previous champion and print it as JSON")
    return parser


def _registry_command(command: str, home: str | None) -> int:
    """`champion` and `rollback`: read or move the registry's champion alias, JSON on stdout."""
    from orchestration.promotion import BUNDLE_MODEL, CHAMPION_ALIAS, current_champion, rollback
    from orchestration.tracking import MLflowResource

    client = MLflowResource(home=home).client()
    if command == "champion":
        champion = current_champion(client)
        if champion is None:
            print(f"No {CHAMPION_ALIAS} for {BUNDLE_MODEL} yet.", file=sys.stderr)
            return 1
    else:
        try:
            champion = rollback(client)
        except LookupError as error:
            print(f"rollback failed: {error}", file=sys.stderr)
            return 1
    print(json.dumps(champion))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Resources read these when they are used, so setting them here configures the whole run.
    for variable, value in (("RECSYS_HOME", args.home), ("RECSYS_SOURCE", getattr(args, "source", None)),
                            ("RECSYS_DATA", getattr(args, "data", None))):
        if value:
            os.environ[variable] = str(value)
    if args.command in ("champion", "rollback"):
        return _registry_command(args.command, args.home)

    from orchestration.marts import MARTS_SCHEMA, format_summary, pipeline_summary
    from orchestration.resources import WarehouseResource

    warehouse = WarehouseResource()
    if args.command == "materialize":
        from orchestration.runner import materialize

        result = materialize(args.select, raise_on_error=False)
        failed_checks = [c for c in result.get_asset_check_evaluations() if not c.passed]
        for check in failed_checks:
            print(f"check failed: {check.asset_key.to_user_string()}:{check.check_name}: {check.description}", file=sys.stderr)
        print(f"{'succeeded' if result.success else 'FAILED'}: {len(result.get_asset_materialization_events())} assets materialized")
        return 0 if result.success and not failed_checks else 1
    with warehouse.connect(read_only=True) as con:
        if args.command == "summary":
            print(format_summary(pipeline_summary(con)))
        else:
            where = "where reason = $reason" if args.reason else ""
            params = {"reason": args.reason} if args.reason else {}
            frame = con.execute(
                f"select * from {MARTS_SCHEMA}.quarantine {where} order by load_id, source_table, source_row limit {int(args.limit)}",
                params,
            ).df()
            print(frame.to_string(index=False) if len(frame) else "No quarantined rows.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
