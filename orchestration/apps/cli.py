"""The `recsys` command line: materialize assets, inspect what the warehouse holds, serve and query the champion."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
from collections.abc import Sequence
from typing import Any

from orchestration.ingest.sources import SOURCE_KINDS
from orchestration.serving.server import add_serve_arguments
from recmodels.presets import PIPELINE, REPLAY, SHORT_WINDOWS


# Exit statuses, for scripts (also in --help).
OK, FAILED, USAGE, UNKNOWN_CUSTOMER, BUSY = 0, 1, 2, 3, 75
STOPPED = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal's number, as shells report it
EXIT_CODES = f"""exit status:
  {OK}    success
  {FAILED}    a run failed or a check of error severity failed (a warning is printed, not failed); nothing to
       answer with (no champion, unknown item)
  {USAGE}    usage error: a bad option, a --data path that does not exist, an unknown --reason, an empty home
  {UNKNOWN_CUSTOMER}    recommend --user: the customer is unknown (popular items are printed instead)
  {BUSY}   the warehouse stayed held by another run for longer than RECSYS_WAREHOUSE_WAIT_SECONDS
  {STOPPED[signal.SIGINT]}  the run was stopped by SIGINT (Ctrl-C)
  {STOPPED[signal.SIGTERM]}  the run was stopped by SIGTERM
"""


class UserError(Exception):
    """A mistake in what was asked: printed as one paragraph, exit status 2, no traceback."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsys", description=__doc__, epilog=EXIT_CODES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", help="state folder (default $RECSYS_HOME or ./.recsys)")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("materialize", help="materialize assets in-process (default: all) with their checks")
    run.add_argument("--select", help="Dagster asset selection, e.g. 'group:ingest' or 'key:fct_interactions+'")
    run.add_argument("--source", choices=SOURCE_KINDS, help="data source (default $RECSYS_SOURCE or synthetic)")
    run.add_argument("--data", help="file or folder to ingest (default $RECSYS_DATA)")
    run.add_argument("--inputs", choices=("all", "purchases"), default="all",
                     help="what the models read: every behaviour the shop records (default) or purchases only; "
                          "they predict purchases either way")
    run.add_argument("--event-types", metavar="NAME=BEHAVIOUR,...",
                     help="the shop's own event names, e.g. 'click=view,buy=purchase' (default $RECSYS_EVENT_TYPES)")
    run.add_argument("--log-level", default="CRITICAL",
                     help="Dagster's console log (default CRITICAL: only the summary; the UI keeps every event)")

    commands.add_parser("summary", help="print loads, reconciliation, quarantine reasons and mart sizes")

    quarantine = commands.add_parser("quarantine", help="show quarantined raw rows")
    quarantine.add_argument("--reason", help="only this reason code")
    quarantine.add_argument("--limit", type=int, default=20)

    commands.add_parser("champion", help="print the registry's current champion as JSON")
    commands.add_parser("rollback", help="restore the previous champion and print it as JSON")

    add_serve_arguments(commands.add_parser("serve", help="run the HTTP API over the champion (docs at /docs)"))

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
                             "the pipeline's is chosen from the data by the split rule)")
    replay.add_argument("--validation-days", type=int, default=SHORT_WINDOWS.validation_days,
                        help="validation window (default %(default)s, presets.SHORT_WINDOWS; "
                             "the pipeline's is chosen from the data by the split rule)")
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

    from orchestration.registry.promotion import current_champion

    tracking = MLflowTracking(home=args.home)
    try:
        champion = current_champion(tracking.client())
        if champion is not None:  # loading the model takes seconds: say what is happening
            print(f"Loading champion v{champion['version']} from MLflow ({tracking.resolved_tracking_uri()}) ...", file=sys.stderr,
                  flush=True)
        service = RecommendationService.from_champion(Warehouse(home=args.home), tracking, pseudonymization_key())
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
        return FAILED
    if args.json:
        print(answer.model_dump_json())
    else:
        print("\n".join([header, footer, "", body]))
    if args.command == "recommend" and args.user is not None and not answer.known_user:
        return UNKNOWN_CUSTOMER
    return OK


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
    from orchestration.defs.parallel import ConcurrencySettingError
    from orchestration.store.lake import LakeSettingError, shared_warehouse
    from orchestration.store.postgres import PostgresSettingError
    from orchestration.store.warehouse import WarehouseFormatError

    args = _parser().parse_args(argv)
    try:
        shared_warehouse()  # a malformed RECSYS_WAREHOUSE is refused before anything runs
        return _main(args)
    except (UserError, LakeSettingError, WarehouseFormatError, PostgresSettingError, ConcurrencySettingError) as error:
        print(f"recsys {args.command}: {error}", file=sys.stderr)
        return USAGE


def _main(args: argparse.Namespace) -> int:
    # Resources read these when they are used, so setting them here configures the whole run.
    data = getattr(args, "data", None) if args.command == "materialize" else None  # replay's --data is its log
    for variable, value in (("RECSYS_HOME", args.home), ("RECSYS_SOURCE", getattr(args, "source", None)),
                            ("RECSYS_DATA", data), ("RECSYS_EVENT_TYPES", getattr(args, "event_types", None))):
        if value:
            os.environ[variable] = str(value)
    if args.command in ("champion", "rollback"):
        return _registry_command(args.command, args.home)
    if args.command == "replay":
        return _replay_command(args)
    if args.command == "serve":
        from orchestration.serving.server import serve_command

        return serve_command(args, ok=OK, usage=USAGE)
    if args.command in ("recommend", "similar", "explain"):
        return _query_command(args)
    if args.command == "materialize":
        return _materialize_command(args)

    from orchestration.store.paths import recsys_paths
    from orchestration.store.warehouse import Warehouse

    paths = recsys_paths(args.home)
    if not Warehouse(args.home).exists():  # checked without Warehouse.paths, which would create the home's folders
        raise UserError(f"the home {paths.home} has no warehouse yet ({paths.warehouse} is missing): "
                        "expected a home where `recsys materialize` (or `make demo`) has run; pass --home or set "
                        "RECSYS_HOME to choose another.")
    warehouse = Warehouse()
    if args.command == "summary":
        from orchestration.store.marts import format_summary, pipeline_summary

        with warehouse.connect(read_only=True) as con:
            print(format_summary(pipeline_summary(con)))
        _print_split(warehouse)
        return OK
    return _quarantine_command(args, warehouse)


def _print_split(warehouse) -> None:
    from orchestration.store.reports import split_lines
    from recmodels.splits import load_split

    split_file = warehouse.artifacts.split_file
    if not split_file.exists():
        print("Evaluation split: none yet (user_sequences has not run).")
        return
    stored = load_split(split_file)
    split = stored.split
    print("\n".join(split_lines(stored.info, len(split.validation), len(split.test), len(split.train_for_test))))


def _check_data(source: str | None, data: str | None) -> None:
    """Refuse a --data (or $RECSYS_DATA) that cannot be read before a run starts: ingest would fail, and with it
    every asset downstream."""
    from pathlib import Path

    from orchestration.ingest.sources import shop_event_types, source_data_path, source_kind

    try:
        kind = source_kind(source)
        shop_event_types()
    except ValueError as error:
        raise UserError(str(error)) from None
    if kind == "synthetic":
        return
    path = source_data_path(data)
    expected = ("a folder holding interactions.csv (or .csv.gz, .parquet) and optionally items.csv"
                if kind == "generic" else "the Online Retail export, a .csv, .csv.gz or .xlsx file or a folder of them")
    if path is None:
        raise UserError(f"--source {kind} needs --data (or RECSYS_DATA): expected {expected}.")
    if not Path(path).exists():
        raise UserError(f"--data {path} does not exist: expected {expected}. Nothing was run.")
    if kind == "generic" and not Path(path).is_dir():
        raise UserError(f"--data {path} is a file: --source generic expects {expected}. Nothing was run.")


def _materialize_command(args: argparse.Namespace) -> int:
    import dagster as dg

    from orchestration.apps.runner import config_for_selection, materialize
    from orchestration.store.warehouse import Warehouse, WarehouseBusyError

    _check_data(args.source, args.data)
    if args.select is not None:
        from orchestration.definitions import defs

        try:
            chosen = dg.AssetSelection.from_string(args.select).resolve(defs.resolve_asset_graph())
            problem = "it selects no asset"
        except Exception as error:  # Dagster's parse and unknown-key errors, each its own class
            chosen, problem = set(), _first_line(str(error))
        if not chosen:
            raise UserError(f"--select {args.select!r} is not an asset selection of this project ({problem}): "
                            "expected e.g. 'group:ingest' or 'key:fct_interactions+'. Nothing was run.")
    warehouse = Warehouse()
    log_path = warehouse.paths.home / "logs" / "materialize.log"
    print(f"Materializing {args.select or 'every asset'} (dbt's output goes to {log_path}) ...", file=sys.stderr,
          flush=True)
    # Dagster maps SIGTERM onto SIGINT's handler while a run executes; the wakeup descriptor still receives
    # each signal's number, so the exit status can say which one stopped the run.
    signals_read, signals_write = os.pipe()
    os.set_blocking(signals_read, False)
    os.set_blocking(signals_write, False)
    previous = signal.set_wakeup_fd(signals_write, warn_on_full_buffer=False)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # before the run too: stop with a status, not dead
    try:
        inputs = {"ops": {"user_sequences": {"config": {"inputs": args.inputs}},
                          "ranker_features": {"config": {"behaviour": args.inputs == "all"}}}}
        result = materialize(args.select, raise_on_error=False, log_level=args.log_level, stdout_log=log_path,
                             run_config=config_for_selection(inputs, args.select))
    except WarehouseBusyError as error:
        print(f"recsys materialize: {error}", file=sys.stderr)
        return BUSY
    except KeyboardInterrupt:
        result = None
    finally:
        signal.set_wakeup_fd(previous)
        try:
            received = os.read(signals_read, 64)
        except BlockingIOError:
            received = b""
        os.close(signals_read)
        os.close(signals_write)
    stopped_by = next((number for number in (signal.SIGTERM, signal.SIGINT) if number in received), None)
    if result is None:  # interrupted while loading the definitions, before Dagster took the signals over
        stopped_by = stopped_by or signal.SIGINT
        print(f"STOPPED by {stopped_by.name} before the run started.", file=sys.stderr)
        return STOPPED[stopped_by]
    materialized = len(result.get_asset_materialization_events())
    failed = [c for c in result.get_asset_check_evaluations() if not c.passed]
    # A warning (a catalogue without text, a refused promotion) is said, as Dagster shows it, but is no failure.
    warnings = [c for c in failed if c.severity == dg.AssetCheckSeverity.WARN]
    failed_checks = [c for c in failed if c not in warnings]
    for check in failed:
        said = "warning" if check in warnings else "check failed"
        print(f"{said}: {check.asset_key.to_user_string()}:{check.check_name}: {check.description}", file=sys.stderr)
    run = f"run {result.run_id} of {result.dagster_run.job_name}"
    if stopped_by is not None:
        print(f"STOPPED by {stopped_by.name}: {run}, {materialized} assets materialized before it.", file=sys.stderr)
        return STOPPED[stopped_by]
    if not result.success:
        print(f"FAILED: {run}: {_failure_cause(result)}; {materialized} assets materialized "
              "(every event is in the Dagster UI: make ui).", file=sys.stderr)
        return FAILED
    print(f"succeeded: {run}, {materialized} assets materialized"
          + (f"; {len(failed_checks)} checks failed" if failed_checks else "")
          + (f"; {len(warnings)} warnings" if warnings else ""))
    return FAILED if failed_checks else OK


def _failure_cause(result: Any) -> str:
    """The first failed step and the last line of its error: the cause, where Dagster's wrapper comes first."""
    failures = result.get_step_failure_events()
    if not failures:
        return "the run failed before any step did (see the Dagster UI)"
    error = failures[0].step_failure_data.error
    while error.cause is not None:
        error = error.cause
    cause = _first_line(error.message)
    return f"step {failures[0].step_key} failed: {cause}" + (
        f" (and {len(failures) - 1} more steps)" if len(failures) > 1 else "")


def _first_line(message: str) -> str:
    return next((line.strip() for line in message.splitlines() if line.strip()), message)


def _quarantine_reasons() -> list[str]:
    """The reason codes marts.quarantine accepts, from the dbt model's accepted_values test."""
    from pathlib import Path

    import yaml

    models = Path(__file__).resolve().parents[2] / "transforms" / "models" / "marts" / "_marts__models.yml"
    for model in yaml.safe_load(models.read_text())["models"]:
        if model["name"] == "quarantine":
            column = next(c for c in model["columns"] if c["name"] == "reason")
            test = next(t for t in column["data_tests"] if isinstance(t, dict) and "accepted_values" in t)
            return list(test["accepted_values"]["arguments"]["values"])
    raise LookupError(f"{models} declares no quarantine model")


QUARANTINE_COLUMNS = ("load_id", "source_table", "source_row", "reason", "raw_values")


def _quarantine_command(args: argparse.Namespace, warehouse: Any) -> int:
    from orchestration.store.marts import MARTS_SCHEMA

    if args.reason:
        reasons = _quarantine_reasons()
        if args.reason not in reasons:
            raise UserError(f"--reason {args.reason!r} is not a quarantine reason code: expected one of "
                            f"{', '.join(reasons)}.")
    where = "where reason = $reason" if args.reason else ""
    params = {"reason": args.reason} if args.reason else {}
    with warehouse.connect(read_only=True) as con:
        frame = con.execute(
            f"select {', '.join(QUARANTINE_COLUMNS)} from {MARTS_SCHEMA}.quarantine {where} "
            f"order by load_id, source_table, source_row limit {int(args.limit)}", params).df()
    if not len(frame):
        print("No quarantined rows.")
        return OK
    # The raw record is the widest column: cut it so that every line fits the terminal.
    width = shutil.get_terminal_size().columns
    others = frame.drop(columns=["raw_values"]).to_string(index=False).splitlines()
    room = max(width - max(len(line) for line in others) - 2, 12)
    frame["raw_values"] = [_cell(value, room) for value in frame["raw_values"]]
    lines = frame.to_string(index=False, justify="left").splitlines()
    print("\n".join(line.rstrip()[:width] for line in lines))
    return OK


if __name__ == "__main__":
    raise SystemExit(main())
