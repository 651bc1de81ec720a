"""Plain helpers of the model assets (no Dagster): warehouse rows and the evaluation report."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Sequence
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from recmodels.metrics import topk_from_scores
from recmodels.splits import LEAVE_LAST_BASKET_OUT, EvalSet
from recmodels.sequences import EVENT_TYPES, decode, purchased_items

REPORT_COLUMNS = ("recall@10", "ndcg@10", "hr@10", "mrr", "recall@50", "ndcg@50", "coverage@10")
KS = (10, 20, 50)


def write_table(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> int:
    """Replace ``table`` (``schema.name``) with ``frame``; returns its row count."""
    schema = table.split(".")[0]
    con.execute(f'create schema if not exists "{schema}"')
    con.register("_frame_to_write", frame)
    try:
        con.execute(f"create or replace table {table} as select * from _frame_to_write")
    finally:
        con.unregister("_frame_to_write")
    return len(frame)


def table_exists(con: duckdb.DuckDBPyConnection, relation: str) -> bool:
    """Whether ``relation`` (``schema.name``, a table or a view) exists in the warehouse."""
    schema, name = relation.split(".")
    return bool(con.execute("select count(*) from information_schema.tables where table_schema = ? and "
                            "table_name = ?", [schema, name]).fetchone()[0])


def sequence_rows(
    sequences: Sequence[np.ndarray], keys: np.ndarray, timestamps: Sequence[np.ndarray], item_ids: np.ndarray,
    validation_cutoff, test_cutoff,
) -> pd.DataFrame:
    """One row per event of every sequence: sequence_key, position (0-based), item_id, event_type, occurred_at,
    period (train / validation / test: which side of the cut-offs the event falls on). A cut-off is one time, or one
    per sequence (leave-last-basket-out)."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    tokens = np.concatenate(sequences) if len(sequences) else np.array([], dtype=np.int64)
    internal, codes = decode(tokens, len(item_ids))
    times = np.concatenate(timestamps) if len(timestamps) else np.array([], dtype="datetime64[ns]")
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)

    def per_event(cutoff) -> np.ndarray:
        if np.ndim(cutoff):
            return np.repeat(np.asarray(cutoff, dtype="datetime64[ns]"), lengths)
        return np.datetime64(pd.Timestamp(cutoff).to_datetime64(), "ns")

    period = np.where(times < per_event(validation_cutoff), "train",
                      np.where(times < per_event(test_cutoff), "validation", "test"))
    return pd.DataFrame({
        "sequence_key": np.repeat(np.asarray(keys, dtype=str), lengths),
        "position": np.arange(len(internal)) - starts,
        "item_id": np.asarray(item_ids)[internal - 1] if len(internal) else np.array([], dtype=str),
        "event_type": np.asarray(EVENT_TYPES)[codes],
        "occurred_at": times,
        "period": period,
    })


def top_candidates(
    source: str, scorer: Callable[[list[np.ndarray]], np.ndarray], rows: EvalSet, item_ids: np.ndarray, k: int,
    batch_size: int = 1024,
) -> pd.DataFrame:
    """The ``k`` best items per row by ``scorer`` (history items allowed): source, sequence_key, rank (1-based),
    item_id (external), score, in_history."""
    frames = []
    for start in range(0, len(rows), batch_size):
        histories = rows.histories[start:start + batch_size]
        scores = scorer(histories)
        top = topk_from_scores(scores, k)  # (B, k) internal ids, best first
        width = top.shape[1]
        in_history = np.stack([np.isin(row, purchased_items(history, len(item_ids)))
                               for row, history in zip(top, histories)])
        frames.append(pd.DataFrame({
            "source": source,
            "sequence_key": np.repeat(np.asarray(rows.keys[start:start + batch_size], dtype=str), width),
            "rank": np.tile(np.arange(1, width + 1), len(histories)),
            "item_id": np.asarray(item_ids)[top.ravel() - 1],
            "score": np.take_along_axis(scores, top, axis=1).ravel().astype(np.float64),
            "in_history": in_history.ravel(),
        }))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["source", "sequence_key", "rank", "item_id", "score", "in_history"]
    )


def metric_rows(model: str, split: str, variant: str, results: dict[str, float],
                intervals: dict[str, Any] | None = None) -> list[dict]:
    """``recmodels.metrics.evaluate`` output as long rows: model, split, variant, segment (all / cold),
    metric, k (None for mrr), value, n_rows (customers of the segment the value averages over) and, from
    ``intervals`` (``recmodels.metrics.metric_intervals``), the 95% interval ``ci_low``, ``ci_high``."""
    rows = []
    intervals = intervals or {}
    for name, value in results.items():
        segment, _, metric = name.rpartition("/")
        segment = segment or "all"
        if metric == "n_rows":
            continue
        metric, _, k = metric.partition("@")
        n_rows = results.get("n_rows" if segment == "all" else f"{segment}/n_rows", 0.0)
        interval = intervals.get(name)
        rows.append({"model": model, "split": split, "variant": variant, "segment": segment, "metric": metric,
                     "k": int(k) if k else None, "value": float(value), "n_rows": int(n_rows),
                     "ci_low": float("nan") if interval is None else interval.low,
                     "ci_high": float("nan") if interval is None else interval.high})
    return rows


def _label(metric: str, k) -> str:
    return metric if pd.isna(k) else f"{metric}@{int(k)}"


def report_table(metrics: pd.DataFrame, split: str = "test", variant: str = "allowed", segment: str = "all") -> pd.DataFrame:
    """model x metric@K (the ``REPORT_COLUMNS`` present), models in their order of appearance."""
    chosen = metrics[(metrics["split"] == split) & (metrics["variant"] == variant) & (metrics["segment"] == segment)]
    chosen = chosen.assign(label=[_label(m, k) for m, k in zip(chosen["metric"], chosen["k"])])
    table = chosen.pivot(index="model", columns="label", values="value")
    columns = [c for c in REPORT_COLUMNS if c in table.columns]
    return table.reindex(index=list(dict.fromkeys(chosen["model"])), columns=columns)


def interval_table(metrics: pd.DataFrame, split: str = "test", metric: str = "ndcg", k: int = 10,
                   variant: str = "allowed") -> pd.DataFrame:
    """model x (metric@k, its 95% interval's bounds, the customers it rests on), best first."""
    chosen = metrics[(metrics["split"] == split) & (metrics["variant"] == variant) & (metrics["segment"] == "all")
                     & (metrics["metric"] == metric) & (metrics["k"] == k)]
    label = f"{metric}@{k}"
    table = chosen.set_index("model")[["value", "ci_low", "ci_high", "n_rows"]].rename(
        columns={"value": label, "ci_low": "95% CI low", "ci_high": "95% CI high", "n_rows": "customers"})
    return table.sort_values(label, ascending=False).rename_axis("model")


def markdown_table(table: pd.DataFrame) -> str:
    """A frame whose index names its rows (a model, a feature) as a Markdown table headed by the index's name."""
    return frame_markdown(table.reset_index(names=table.index.name or "model"))


def ndcg_chart_png(metrics: pd.DataFrame, split: str = "test", k: int = 10) -> bytes:
    """Bar chart of NDCG@k per model on ``split``, history items allowed and excluded side by side."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    chosen = metrics[(metrics["split"] == split) & (metrics["segment"] == "all")
                     & (metrics["metric"] == "ndcg") & (metrics["k"] == k)]
    models = list(dict.fromkeys(chosen["model"]))
    figure, axes = plt.subplots(figsize=(7, 3.2), dpi=90)
    width = 0.4
    for offset, variant in ((-width / 2, "allowed"), (width / 2, "excluded")):
        values = chosen[chosen["variant"] == variant].set_index("model")["value"].reindex(models)
        axes.bar(np.arange(len(models)) + offset, values.to_numpy(), width, label=f"history {variant}")
    axes.set_xticks(np.arange(len(models)), models, rotation=20, ha="right")
    axes.set_ylabel(f"NDCG@{k}")
    axes.set_title(f"NDCG@{k} on the {split} rows (full ranking)")
    axes.legend(frameon=False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def markdown_image(png: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def importance_chart_png(importance: pd.DataFrame, top: int = 20) -> bytes:
    """Horizontal bars of the ranker's gain per feature, the ``top`` largest, largest on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = importance.head(top).iloc[::-1]
    total = importance["gain"].sum()
    share = shown["gain"] / total if total > 0 else shown["gain"] * 0.0
    figure, axes = plt.subplots(figsize=(7, 0.28 * len(shown) + 1.2), dpi=90)
    axes.barh(shown["feature"], share)
    axes.set_xlabel("share of total gain")
    axes.set_title("Ranker feature importance (gain)")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


SIGNIFICANT_DIGITS = 4  # of every measured value shown in the UI: enough to compare models, no false precision


def format_cell(value) -> str:
    """A table cell: counts as integers, measured values to SIGNIFICANT_DIGITS, missing values empty."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        # Past SIGNIFICANT_DIGITS integer digits, the fraction is noise and an exponent is hard to read.
        big = abs(value) >= 10 ** SIGNIFICANT_DIGITS
        return f"{float(value):,.0f}" if big else f"{float(value):.{SIGNIFICANT_DIGITS}g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def frame_markdown(frame: pd.DataFrame) -> str:
    """Any small frame as a Markdown table, numbers right-aligned and formatted by ``format_cell``."""
    numeric = [pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype) for dtype in frame.dtypes]
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |",
             "|" + "".join(" ---: |" if right else " --- |" for right in numeric)]
    lines += ["| " + " | ".join(format_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def split_lines(info: dict[str, Any], validation_rows: int, test_rows: int, train_sequences: int) -> list[str]:
    """The evaluation split in words: the rule that chose it, the cut-offs and the customers each part holds."""
    rule = info.get("split_rule") or {}
    if rule.get("rule") == LEAVE_LAST_BASKET_OUT:
        return [f"Evaluation split: {LEAVE_LAST_BASKET_OUT}, each customer's own cut-offs", f"  {rule['reason']}",
                f"  validation (each customer's second-to-last basket): {validation_rows:,} customers",
                f"  test (each customer's last basket, up to {info.get('last_event')}): {test_rows:,} customers",
                f"  training sequences (what precedes each customer's test basket): {train_sequences:,}"]
    if rule:
        lines = [f"Evaluation split: {rule['rule']}, {rule['test_days']} test days and "
                 f"{rule['validation_days']} validation days"]
    else:  # a split saved before the rule was recorded: its windows from its cut-offs
        end = pd.Timestamp(info["last_event"]).normalize() + pd.Timedelta(days=1)
        test_days = (end - pd.Timestamp(info["test_cutoff"])).days
        validation_days = (pd.Timestamp(info["test_cutoff"]) - pd.Timestamp(info["validation_cutoff"])).days
        lines = [f"Evaluation split: temporal, {test_days} test days and {validation_days} validation days"]
    if rule.get("reason"):
        lines.append(f"  {rule['reason']}")
    lines += [f"  validation from {info.get('validation_cutoff')}: {validation_rows:,} customers",
              f"  test from {info.get('test_cutoff')} to {info.get('last_event')}: {test_rows:,} customers",
              f"  training sequences before the test cut-off: {train_sequences:,}"]
    return lines
