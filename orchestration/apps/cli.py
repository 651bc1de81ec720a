"""The `recsys` command line: materialize assets, inspect what the warehouse holds, serve and query the champion."""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from orchestration.ingest.sources import SOURCE_KINDS
from recmodels.presets import PIPELINE, REPLAY, SHORT_WINDOWS
from recmodels.splits import SplitWindows


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

    serve = commands.add_parser("serve", help="run the HTTP API over the champion (docs at /docs)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--reload-seconds", type=float, default=30,
                       help="check the registry for a new champion at most this often (default 30)")

    recommend = commands.add_parser("recommend", help="a customer's or an anonymous session's recommendations")
    who = recommend.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="the shop's customer id")
    who.add_argument("--items", nargs="+", metavar="ID", help="a session's item ids, oldest first")
    similar = commands.add_parser("similar", help="items bought together with an item or described alike")
    similar.add_argument("--item", required=True, help="the catalogue's item id")
    for query in (recommend, similar):
        query.add_argument("--k", type=_k, default=10, help="how many items (1 to 100, default 10)")
    explain = commands.add_parser("explain", help="why an item is (or is not) recommended to a customer")
    explain.add_argument("--user", required=True, help="the shop's customer id")
    explain.add_argument("--item", required=True, help="the catalogue's item id")
    for query in (recommend, similar, explain):
        query.add_argument("--json", action="store_true", help="one JSON object (the API's response) instead")

    replay = commands.add_parser(
        "replay", help="feed an order log into the landing folder in time order and let the sensors run everything")
    replay.add_argument("--data", required=True, help="order log (.csv, .csv.gz, .xlsx, .parquet)")
    replay.add_argument("--every", default="7d", help="length of each drop (default 7d)")
    replay.add_argument("--initial", help="length of the first drop, the history a shop starts with (default --every)")
    replay.add_argument("--until", help="stop before this date (default: the end of the log)")
    replay.add_argument("--max-drops", type=int, help="stop after this many drops")
    replay.add_argument("--bad-drop", type=int,
                        help="corrupt drop N (negative: from the end) with a currency-unit price bug, to see a refusal")
    # Not the pipeline's defaults: a replay starts from a short history and retrains once per drop.
    replay.add_argument("--test-days", type=int, default=SHORT_WINDOWS.test_days,
                        help="test window of each retrain (default %(default)s, presets.SHORT_WINDOWS; "
                             f"the pipeline's is {SplitWindows.test_days})")
    replay.add_argument("--validation-days", type=int, default=SHORT_WINDOWS.validation_days,
                        help="validation window (default %(default)s, presets.SHORT_WINDOWS; "
                             f"the pipeline's is {SplitWindows.validation_days})")
    replay.add_argument("--epochs", type=int, default=REPLAY.train.epochs,
                        help=f"SASRec epochs per retrain (default %(default)s, presets.REPLAY; "
                             f"the pipeline's is {PIPELINE.train.epochs})")
    replay.add_argument("--hidden", type=int, default=REPLAY.model.hidden_size,
                        help=f"SASRec hidden size (default %(default)s, presets.REPLAY; "
                             f"the pipeline's is {PIPELINE.model.hidden_size})")
    return parser


def _replay_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from orchestration.apps.replay import replay
    from orchestration.store.paths import recsys_paths

    run_config = {"ops": {
        "user_sequences": {"config": {"test_days": args.test_days, "validation_days": args.validation_days}},
        "sasrec_model": {"config": {"epochs": args.epochs, "hidden_size": args.hidden}},
    }}
    try:
        replay(Path(args.data), args.every, recsys_paths(args.home).home, bad_drop=args.bad_drop, until=args.until,
               max_drops=args.max_drops, initial=args.initial, run_config=run_config)
    except (ValueError, FileNotFoundError) as error:
        print(f"replay: {error}", file=sys.stderr)
        return 2
    return 0


def _k(value: str) -> int:
    from orchestration.serving.service import MAX_K

    try:
        k = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if not 1 <= k <= MAX_K:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_K}, got {k}")
    return k


def _registry_command(command: str, home: str | None) -> int:
    """`champion` and `rollback`: read or move the registry's champion alias, JSON on stdout."""
    from orchestration.registry.promotion import BUNDLE_MODEL, CHAMPION_ALIAS, current_champion, rollback
    from orchestration.registry.tracking import MLflowTracking

    client = MLflowTracking(home=home).client()
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


TITLE_WIDTH = 40  # characters of a title in the tables
NUMERIC_COLUMNS = {"rank", "score", "co_purchase", "text_cosine"}  # right-aligned


def _query_command(args: argparse.Namespace) -> int:
    """`recommend`, `similar`, `explain`: the API's answer from an in-process service, as a table or JSON."""
    from orchestration.registry.tracking import MLflowTracking
    from orchestration.serving import api
    from orchestration.serving.service import NoChampionError, RecommendationService
    from orchestration.store.privacy import pseudonymization_key
    from orchestration.store.warehouse import Warehouse

    try:
        service = RecommendationService.from_champion(
            Warehouse(home=args.home), MLflowTracking(home=args.home), pseudonymization_key())
    except (NoChampionError, FileNotFoundError) as error:
        print(f"{args.command} failed: {error}", file=sys.stderr)
        return 1
    version, as_of = service.version, service.data.as_of.isoformat()
    footer = f"Model version {version}, data as of {as_of}."
    try:
        if args.command == "recommend" and args.user is not None:
            answer = api.user_response(service.recommend_user(args.user, args.k), version)
            if answer.known_user:
                header = (f"Customer {answer.user_id}: known, {answer.history_length} purchases; "
                          f"{answer.strategy} ranking.")
            else:
                header = f"Customer {answer.user_id}: unknown, popular items instead ({answer.strategy})."
            body = _table(answer.items, ("rank", "item_id", "title", "score", "reason"))
        elif args.command == "recommend":
            answer = api.session_response(service.recommend_session(args.items, args.k), version)
            if answer.unknown_items:  # as in the API: ignored, and said so
                print(f"ignored unknown items: {' '.join(answer.unknown_items)}", file=sys.stderr)
            header = (f"Session of {len(args.items)} items ({len(answer.unknown_items)} unknown, "
                      f"{len(answer.text_only_items)} known by description only); {answer.strategy} ranking.")
            body = _table(answer.items, ("rank", "item_id", "title", "score", "reason"))
        elif args.command == "similar":
            answer = api.similar_response(service.similar(args.item, args.k), version)
            known = "" if answer.known_item else ", matched by its description only"
            header = f"Items similar to {answer.item_id} {_quoted(answer.title)}{known}."
            body = _table(answer.items, ("rank", "item_id", "title", "score", "co_purchase", "text_cosine"))
        else:
            answer = api.explain_response(service.explain(args.user, args.item), version)
            header = (f"Customer {answer.user_id} ({'known' if answer.known_user else 'unknown'}) and item "
                      f"{answer.item_id} {_quoted(answer.title)}.")
            body = _explanation(answer)
    except KeyError as error:  # an item neither in the model's catalogue nor described
        print(f"{args.command} failed: unknown item: {error.args[0] if error.args else error}", file=sys.stderr)
        return 1
    if args.json:
        print(answer.model_dump_json())
    else:
        print("\n".join([header, footer, "", body]))
    return 0


def _quoted(title: str | None) -> str:
    return f'"{_cell(title, TITLE_WIDTH)}"' if title else "(no title)"


def _cell(value: object, width: int | None = None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    shown = " ".join(str(value).split())  # a title's newlines and tabs would break the columns
    return shown if width is None or len(shown) <= width else shown[:width - 3] + "..."


def _table(rows: Sequence[object], columns: Sequence[str]) -> str:
    """Aligned columns (numbers right, text left), titles truncated; "-" for a missing value."""
    if not rows:
        return "No items."
    cells = [[_cell(getattr(row, name), TITLE_WIDTH if name == "title" else None) for name in columns]
             for row in rows]
    widths = [max(len(name), *(len(line[i]) for line in cells)) for i, name in enumerate(columns)]
    right = [name in NUMERIC_COLUMNS for name in columns]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)).rstrip()

    return "\n".join([line(columns), line(["-" * w for w in widths]), *(line(values) for values in cells)])


def _explanation(answer: Any) -> str:
    """An ``api.Explanation`` as aligned "name  value" lines, the ranker's features last."""
    rows = [("explanation", answer.explanation), ("reason", answer.reason),
            ("because of", f"{answer.because_of} {_quoted(answer.because_of_title)}" if answer.because_of else "-"),
            ("strength", _cell(answer.strength)),
            ("candidate", f"yes, rank {answer.rank}, score {_cell(answer.score)}" if answer.candidate else "no")]
    if answer.features:
        # Counts and ranks are whole numbers: no trailing zeros.
        rows += [("features", ""), *((f"  {name}", "-" if value is None else f"{value:.4f}".rstrip("0").rstrip("."))
                                     for name, value in answer.features.items())]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}".rstrip() for name, value in rows)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Resources read these when they are used, so setting them here configures the whole run.
    data = getattr(args, "data", None) if args.command == "materialize" else None  # replay's --data is its log
    for variable, value in (("RECSYS_HOME", args.home), ("RECSYS_SOURCE", getattr(args, "source", None)),
                            ("RECSYS_DATA", data)):
        if value:
            os.environ[variable] = str(value)
    if args.command in ("champion", "rollback"):
        return _registry_command(args.command, args.home)
    if args.command == "replay":
        return _replay_command(args)
    if args.command == "serve":
        import uvicorn

        from orchestration.serving.api import create_app

        # uvicorn's own log setup, plus the API's messages (which champion version is served, failed reloads).
        log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
        log_config["loggers"]["orchestration"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
        uvicorn.run(create_app(args.home, args.reload_seconds), host=args.host, port=args.port, log_config=log_config)
        return 0
    if args.command in ("recommend", "similar", "explain"):
        return _query_command(args)

    from orchestration.store.marts import MARTS_SCHEMA, format_summary, pipeline_summary
    from orchestration.store.warehouse import Warehouse

    warehouse = Warehouse()
    if args.command == "materialize":
        from orchestration.apps.runner import materialize

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
