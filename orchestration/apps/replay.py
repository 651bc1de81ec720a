"""Replay a real order log into the landing folder in time order and let the sensors run the pipeline.

Each drop (one ``every`` window of the log, in the file's own layout) is written into ``RECSYS_HOME/landing``;
then the three sensors are evaluated in order, exactly as the daemon would, and every run they request is
executed in-process: the landing sensor's ``data_job``, the retrain sensor's ``retrain_job`` and the champion
sensor's ``recommendations_job``. The runs go to the Dagster instance under RECSYS_HOME, so the UI shows them.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from orchestration.ingest.readers import file_suffix

DATE_COLUMNS = ("InvoiceDate", "invoicedate", "timestamp", "occurred_at")
PRICE_COLUMNS = ("UnitPrice", "Price", "unit_price", "price")
BAD_PRICE_FACTOR = 10_000_000  # a currency-unit bug: prices in 1e-7 units, far above any real unit price


@dataclass(frozen=True)
class Drop:
    index: int  # 1-based
    start: pd.Timestamp
    end: pd.Timestamp  # exclusive
    rows: int
    corrupted: bool


@dataclass
class StepReport:
    drop: Drop
    ingested_rows: int = 0
    ingest_ok: bool = False
    failed_checks: list[str] = field(default_factory=list)
    retrain: str = ""  # the retrain sensor's reason
    retrained: bool = False
    decision: dict[str, Any] | None = None
    recommendations: int | None = None

    def line(self) -> str:
        d = self.drop
        parts = [f"drop {d.index:>2} {d.start.date()}..{(d.end - pd.Timedelta(days=1)).date()}"
                 f"{' [corrupted]' if d.corrupted else ''}: {d.rows:,} rows"]
        parts.append(f"ingest {'ok' if self.ingest_ok else 'FAILED'} (+{self.ingested_rows:,} raw rows)")
        if self.failed_checks:
            parts.append(f"failed checks: {', '.join(self.failed_checks[:3])}{' ...' if len(self.failed_checks) > 3 else ''}")
        if self.retrained:
            if self.decision is None:
                parts.append(f"retrain did not reach promotion ({self.retrain})")
            else:
                verdict = self.decision["decision"]
                parts.append(f"retrain -> v{self.decision['model_version']} {verdict} "
                             f"(NDCG@10 {self.decision['challenger_ndcg@10']:.4f})")
        else:
            parts.append(f"no retrain ({self.retrain})")
        if self.recommendations is not None:
            parts.append(f"recommendations refreshed ({self.recommendations:,} rows)")
        return "; ".join(parts)


@dataclass
class OrderLog:
    rows: pd.DataFrame  # every well-formed record, values as text
    date_column: str
    malformed: list[list[str]]  # records with the wrong number of fields, kept for ingest to quarantine


def _text_lines(path: Path, gzipped: bool) -> Iterator[str]:
    for encoding in ("utf-8", "latin-1"):  # the UCI file and many shop exports are Latin-1
        try:
            opener = gzip.open if gzipped else open
            with opener(path, "rt", encoding=encoding, newline="") as handle:
                lines = handle.readlines()
            return iter(lines)
        except UnicodeDecodeError:
            continue
    raise ValueError(f"{path}: neither UTF-8 nor Latin-1 text")


def read_log(path: Path) -> OrderLog:
    """The log as text columns, as ingest will read them. CSV records with the wrong number of fields are
    kept aside (not dropped): replay hands them to ingest, which quarantines them as malformed lines."""
    suffix = file_suffix(path)
    malformed: list[list[str]] = []
    if suffix in (".csv", ".csv.gz"):
        records = csv.reader(_text_lines(path, suffix == ".csv.gz"))
        header = next(records, None)
        if header is None:
            raise ValueError(f"{path} is empty: no header line")
        good = []
        for record in records:
            if len(record) == len(header):
                good.append(record)
            elif any(field.strip() for field in record):
                malformed.append(record)
        frame = pd.DataFrame(good, columns=header, dtype=str)
    elif suffix == ".xlsx":
        frame = pd.read_excel(path, dtype=str, keep_default_na=False)
    elif suffix == ".parquet":
        frame = pd.read_parquet(path)
    else:
        raise ValueError(f"{path}: replay reads .csv, .csv.gz, .xlsx or .parquet order logs, not {path.suffix!r}")
    column = next((c for c in DATE_COLUMNS if c in frame.columns), None)
    if column is None:
        raise ValueError(f"{path}: no date column; expected one of {', '.join(DATE_COLUMNS)}, got {list(frame.columns)}")
    return OrderLog(frame, column, malformed)


def plan_drops(times: pd.Series, every: pd.Timedelta, until: pd.Timestamp | None = None,
               initial: pd.Timedelta | None = None) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Consecutive [start, end) windows from the first event's day on: the first ``initial`` long (a shop's
    history at onboarding; default ``every``), then ``every`` long, up to ``until`` (exclusive; the last window
    is cut there) or past the last event."""
    parsed = times.dropna()
    if parsed.empty:
        return []
    begin = parsed.min().normalize()
    stop = parsed.max() + pd.Timedelta(microseconds=1) if until is None else until  # exclusive
    windows = []
    length = initial or every
    while begin < stop:
        windows.append((begin, min(begin + length, stop) if until is not None else begin + length))
        begin += length
        length = every
    return windows


def parse_every(text: str) -> pd.Timedelta:
    try:
        every = pd.Timedelta(text)
    except ValueError:
        raise ValueError(f"--every {text!r} is not a duration such as 7d or 24h") from None
    if every <= pd.Timedelta(0):
        raise ValueError(f"--every must be positive, got {text!r}")
    return every


def write_drops(log: OrderLog, every: pd.Timedelta, folder: Path, bad_drop: int | None = None,
                until: pd.Timestamp | None = None, initial: pd.Timedelta | None = None
                ) -> Iterator[tuple[Drop, Path]]:
    """Each window's records as ``drop-NNNN-<start>.csv.gz`` under ``folder``. Records whose date does not
    parse, and malformed ones, go into the first drop, where ingest quarantines them with a reason."""
    frame = log.rows
    times = pd.to_datetime(frame[log.date_column], errors="coerce", format="mixed")
    windows = plan_drops(times, every, until=until, initial=initial)
    price = next((c for c in PRICE_COLUMNS if c in frame.columns), None)
    if bad_drop is not None and bad_drop < 0:
        bad_drop = len(windows) + 1 + bad_drop
    folder.mkdir(parents=True, exist_ok=True)
    for index, (start, end) in enumerate(windows, start=1):
        chosen = (times >= start) & (times < end)
        if index == 1:
            chosen |= times.isna()
        rows = frame.loc[chosen.to_numpy()]
        corrupted = index == bad_drop
        if corrupted:
            if price is None:
                raise ValueError(f"--bad-drop needs a price column ({', '.join(PRICE_COLUMNS)}) to corrupt")
            values = pd.to_numeric(rows[price], errors="coerce") * BAD_PRICE_FACTOR
            rows = rows.assign(**{price: [raw if pd.isna(v) else f"{v:.2f}" for raw, v in zip(rows[price], values)]})
        extra = log.malformed if index == 1 else []
        path = folder / f"drop-{index:04d}-{start.date()}.csv.gz"
        with gzip.open(path, "wt", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(frame.columns)
            writer.writerows(rows.astype(str).itertuples(index=False, name=None))
            writer.writerows(extra)
        yield Drop(index, start, end, len(rows) + len(extra), corrupted), path


class Replayer:
    """Drops in, sensors evaluated, requested runs executed in-process, one step at a time."""

    def __init__(self, home: Path, run_config: dict[str, Any], log: Callable[[str], None] = print):
        from orchestration.apps.instance import ensure_dagster_home
        from orchestration.defs.resources import MLflowResource, WarehouseResource

        self.home = home
        os.environ["RECSYS_HOME"] = str(home)
        os.environ["RECSYS_LANDING_SETTLE_SECONDS"] = "0"  # drops are written whole before the sensor looks
        ensure_dagster_home()
        self.instance = dg.DagsterInstance.get()
        self.warehouse = WarehouseResource(home=str(home))
        self.mlflow = MLflowResource(home=str(home))
        self.run_config = run_config
        self.cursors: dict[str, str | None] = {}
        self.log = log

    def _sensor(self, sensor: dg.SensorDefinition, resources: dict[str, Any]) -> list[dg.RunRequest]:
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursors.get(sensor.name),
                                          resources=resources)
        result = sensor(context)
        # A sensor may return a SensorResult, one RunRequest or SkipReason, or yield several.
        single = isinstance(result, (dg.SensorResult, dg.RunRequest, dg.SkipReason)) or result is None
        outputs = [result] if single else list(result)  # (SensorResult is a NamedTuple: test it first)
        requests, self.last_skip = [], ""
        cursor = context.cursor
        for output in outputs:
            if isinstance(output, dg.SensorResult):
                requests += list(output.run_requests or [])
                cursor = output.cursor if output.cursor is not None else cursor
                output = output.skip_reason
            if isinstance(output, dg.RunRequest):
                requests.append(output)
            elif isinstance(output, dg.SkipReason):
                self.last_skip = output.skip_message or ""
        self.cursors[sensor.name] = cursor
        return requests

    def _execute(self, job, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        from orchestration.apps.runner import config_for_selection, materialize
        from orchestration.defs.resources import DataSourceResource

        resources: dict[str, Any] = {"warehouse": self.warehouse, "mlflow": self.mlflow}
        source = (request.run_config or {}).get("resources", {}).get("data_source", {}).get("config")
        if source:
            resources["data_source"] = DataSourceResource(**source)
        # By name, so the UI lists replayed runs under the job a sensor would have launched.
        return materialize(job=job.name, resources=resources, instance=self.instance, raise_on_error=False,
                           log_level="CRITICAL", stdout_log=self.home / "replay-dbt.log",
                           run_config=config_for_selection(self.run_config, job.selection))

    def landing_tick(self) -> list[dg.ExecuteInProcessResult]:
        """One evaluation of the landing sensor, and the data_job run of each entry it found."""
        from orchestration.definitions import data_job
        from orchestration.defs.automation import landing_sensor

        return [self._execute(data_job, request)
                for request in self._sensor(landing_sensor, {"warehouse": self.warehouse})]

    def step(self, drop: Drop, path: Path) -> StepReport:
        from orchestration.definitions import recommendations_job, retrain_job
        from orchestration.defs.automation import champion_sensor, retrain_sensor

        report = StepReport(drop)
        landing = self.warehouse.paths.landing_dir
        landing.mkdir(parents=True, exist_ok=True)
        path.rename(landing / path.name)
        for result in self.landing_tick():
            raw = result.asset_materializations_for_node("raw_tables")
            report.ingest_ok = bool(raw)
            report.ingested_rows += sum(int(m.metadata["new_rows"].value) for m in raw)
            report.failed_checks += [f"{c.asset_key.to_user_string()}:{c.check_name}"
                                     for c in result.get_asset_check_evaluations() if not c.passed]
        requests = self._sensor(retrain_sensor, {"warehouse": self.warehouse})
        report.retrain = self.last_skip
        for request in requests:
            report.retrained = True
            result = self._execute(retrain_job, request)
            decided = result.asset_materializations_for_node("promotion_decision")
            if decided:
                report.decision = {k: v.value for k, v in decided[0].metadata.items()}
            else:
                failure = result.get_step_failure_events()
                report.retrain = (f"{failure[0].step_key}: {_first_line(failure[0].step_failure_data.error.message)}"
                                  if failure else "blocked by a failed check")
        for request in self._sensor(champion_sensor, {"mlflow": self.mlflow}):
            result = self._execute(recommendations_job, request)
            made = result.asset_materializations_for_node("user_recommendations")
            report.recommendations = int(made[0].metadata["dagster/row_count"].value) if made else 0
        return report


def _first_line(message: str) -> str:
    lines = [line for line in message.splitlines() if line.strip()]
    return lines[-1] if lines else message  # Dagster's wrapper line comes first, the cause last


def replay(data: Path, every: str, home: Path, bad_drop: int | None = None, until: str | None = None,
           max_drops: int | None = None, initial: str | None = None, run_config: dict[str, Any] | None = None,
           log: Callable[[str], None] = print) -> dict[str, Any]:
    """Replay ``data`` in ``every`` windows into ``home``; returns the summary printed as the last line."""
    window = parse_every(every)
    order_log = read_log(data)
    staging = home / "replay-staging"
    replayer = Replayer(home, run_config or {}, log)
    log(f"Replaying {data} ({len(order_log.rows) + len(order_log.malformed):,} records) in windows of {window} "
        f"into {home}")
    reports, trend = [], []
    drops = write_drops(order_log, window, staging, bad_drop, pd.Timestamp(until) if until else None,
                        parse_every(initial) if initial else None)
    for drop, path in drops:
        if max_drops is not None and drop.index > max_drops:
            path.unlink()
            break
        report = replayer.step(drop, path)
        reports.append(report)
        if report.decision:
            trend.append(round(float(report.decision["challenger_ndcg@10"]), 4))
        log(report.line())
        if report.decision:
            for reason in str(report.decision.get("reasons", "")).splitlines():
                log(f"      {reason}")
    decided = [r.decision for r in reports if r.decision]
    summary = {
        "drops": len(reports),
        "ingested": sum(r.ingest_ok for r in reports),
        "retrains": sum(r.retrained for r in reports),
        "promotions": sum(d["decision"] == "promoted" for d in decided),
        "refusals": sum(d["decision"] == "refused" for d in decided),
        "ndcg_10_trend": trend,
        "corrupted_drops": [r.drop.index for r in reports if r.drop.corrupted],
    }
    log(json.dumps(summary))
    return summary

