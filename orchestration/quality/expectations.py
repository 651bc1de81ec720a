"""Great Expectations suites for the marts.

dbt tests own the SQL invariants (keys unique and not null, relationships, accepted values); these
suites own what dbt does not say: volume, null rates, value ranges, the timestamp window, pseudonymised
identifiers and the reconciliation equation. Each suite validates a DataFrame with an ephemeral GX
context, so nothing is written to disk and no GX project folder is needed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

# A customer ("u_") or an anonymous visitor's session ("s_"), both keyed hashes: never a shop's raw id.
PSEUDONYM_PATTERN = r"^[us]_[0-9a-f]{16}$"


@dataclass(frozen=True)
class QualityThresholds:
    """Limits the marts must respect before anything downstream may use them."""

    min_interactions: int = 1  # fewer clean events than this means the input was unusable
    min_items: int = 1
    min_users: int = 1
    earliest_event: str = "1990-01-01"  # events before this are clock errors, not history
    future_tolerance_days: int = 1  # events may be stamped up to this far after "now" (time zones)
    max_quantity: int = 1_000_000  # units on one line
    max_unit_price: float = 1_000_000.0
    min_item_text_fraction: float = 0.5  # share of items with a title or description (a warning only)


@dataclass(frozen=True)
class MartSuite:
    """One mart's expectations: which columns to read and how to build the suite."""

    table: str
    columns: tuple[str, ...]
    build: Callable[[QualityThresholds], list[Any]]
    description: str
    blocking: bool = True
    prepare: Callable[[pd.DataFrame], pd.DataFrame] | None = None


@dataclass
class ValidationOutcome:
    """Every expectation's result, in suite order: ``checks`` holds one row each (what, column, bound, observed,
    passed); ``failures`` the failed ones with their raw keyword arguments."""

    success: bool
    evaluated: int
    failures: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        passed = self.evaluated - len(self.failures)
        head = f"{passed} of {self.evaluated} expectations passed" + ("." if self.success else "; failed:")
        lines = [head] + [f"- {c['expectation']} {c['column']} {c['bound']}: {c['observed']}".replace("  ", " ")
                          for c in self.checks if not c["passed"]]
        return "\n".join(lines)


SET_SHOWN = 5  # values of an expected set written out; a longer set is summarised by its size


def _bound(kwargs: dict[str, Any]) -> str:
    """The expectation's limit in words: ``between 1 and 1000000``, ``in {True}``, ``A >= B``."""
    parts = []
    low, high = _plain(kwargs.get("min_value")), _plain(kwargs.get("max_value"))
    if low is not None and high is not None:
        parts.append(f"= {low}" if low == high else f"between {low} and {high}")
    elif low is not None:
        parts.append(f">= {low}")
    elif high is not None:
        parts.append(f"<= {high}")
    if "value" in kwargs:
        parts.append(f"= {kwargs['value']}")
    if "value_set" in kwargs:
        values = list(kwargs["value_set"])
        shown = ", ".join(map(str, values)) if len(values) <= SET_SHOWN else f"{len(values):,} allowed values"
        parts.append(f"in {{{shown}}}")
    if "regex" in kwargs:
        parts.append(f"matches {kwargs['regex']}")
    if "column_A" in kwargs:
        relation = ">=" if kwargs.get("or_equal") else ">" if "or_equal" in kwargs else "="
        parts.append(f"{kwargs['column_A']} {relation} {kwargs['column_B']}")
    if kwargs.get("mostly") is not None:
        parts.append(f"for at least {kwargs['mostly']:.0%} of rows")
    return " ".join(parts)


def _plain(value: Any) -> Any:
    """1.0 -> 1 and midnight timestamps as dates, so a bound reads as it was written."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, pd.Timestamp) and value == value.normalize():
        return value.date()
    return value


def _short_name(expectation_type: str) -> str:
    return expectation_type.removeprefix("expect_").replace("_", " ")


def _event_window(thresholds: QualityThresholds) -> tuple[pd.Timestamp, pd.Timestamp]:
    latest = pd.Timestamp.now().normalize() + pd.Timedelta(days=thresholds.future_tolerance_days + 1)
    return pd.Timestamp(thresholds.earliest_event), latest


def _interactions_suite(t: QualityThresholds) -> list[Any]:
    import great_expectations as gx

    earliest, latest = _event_window(t)
    return [
        gx.expectations.ExpectTableRowCountToBeBetween(min_value=t.min_interactions),
        *(
            gx.expectations.ExpectColumnValuesToNotBeNull(column=column)
            for column in ("user_id", "item_id", "occurred_at", "event_type", "quantity")
        ),
        gx.expectations.ExpectColumnValuesToBeBetween(column="quantity", min_value=1, max_value=t.max_quantity),
        gx.expectations.ExpectColumnValuesToBeBetween(column="unit_price", min_value=0, max_value=t.max_unit_price),
        gx.expectations.ExpectColumnValuesToBeBetween(column="occurred_at", min_value=earliest, max_value=latest),
        gx.expectations.ExpectColumnValuesToMatchRegex(column="user_id", regex=PSEUDONYM_PATTERN),
    ]


def _items_suite(t: QualityThresholds) -> list[Any]:
    import great_expectations as gx

    return [
        gx.expectations.ExpectTableRowCountToBeBetween(min_value=t.min_items),
        gx.expectations.ExpectColumnValuesToBeBetween(column="price", min_value=0, max_value=t.max_unit_price),
    ]


def _item_text_suite(t: QualityThresholds) -> list[Any]:
    import great_expectations as gx

    return [
        gx.expectations.ExpectColumnValuesToBeInSet(
            column="has_text", value_set=[True], mostly=t.min_item_text_fraction
        )
    ]


def _users_suite(t: QualityThresholds) -> list[Any]:
    import great_expectations as gx

    earliest, latest = _event_window(t)
    return [
        gx.expectations.ExpectTableRowCountToBeBetween(min_value=t.min_users),
        gx.expectations.ExpectColumnValuesToMatchRegex(column="user_id", regex=PSEUDONYM_PATTERN),
        gx.expectations.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="last_seen_at", column_B="first_seen_at", or_equal=True
        ),
        gx.expectations.ExpectColumnValuesToBeBetween(column="first_seen_at", min_value=earliest, max_value=latest),
    ]


def _with_accounted_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(accounted_rows=frame["kept_rows"] + frame["duplicate_rows"] + frame["rejected_rows"])


def _reconciliation_suite(t: QualityThresholds) -> list[Any]:
    import great_expectations as gx

    return [
        gx.expectations.ExpectTableRowCountToBeBetween(min_value=1),
        # Every raw row is kept, a duplicate, or quarantined: the books balance exactly, per load.
        gx.expectations.ExpectColumnPairValuesToBeEqual(column_A="raw_rows", column_B="accounted_rows"),
        gx.expectations.ExpectColumnPairValuesToBeEqual(column_A="raw_rows", column_B="declared_rows"),
        *(
            gx.expectations.ExpectColumnValuesToBeBetween(column=column, min_value=0)
            for column in ("kept_rows", "duplicate_rows", "rejected_rows")
        ),
    ]


# Ranker inputs that may be missing: an item never sold with a price has no price (LightGBM handles NaN).
RANKER_NULLABLE = frozenset({"item_price", "item_price_vs_user"})
RANKER_NON_NEGATIVE = ("_rank", "purchases", "_7d", "_30d", "trend", "age_days", "user_orders", "user_events",
                       "days_since", "days_between")


def ranker_input_suite(feature_names: list[str]) -> list[Any]:
    """The re-ranker's input frame: candidates present, no NaN outside RANKER_NULLABLE, counts and ages >= 0,
    shares in [0, 1], cosines in [-1, 1], labels 0/1."""
    import great_expectations as gx

    suite = [
        gx.expectations.ExpectTableRowCountToBeBetween(min_value=1),
        gx.expectations.ExpectColumnValuesToBeInSet(column="label", value_set=[0, 1]),
        gx.expectations.ExpectColumnValuesToNotBeNull(column="item"),
    ]
    for name in feature_names:
        if name not in RANKER_NULLABLE:
            suite.append(gx.expectations.ExpectColumnValuesToNotBeNull(column=name))
        if name.endswith(RANKER_NON_NEGATIVE) or name.startswith(("item_purchases", "user_item_")):
            suite.append(gx.expectations.ExpectColumnValuesToBeBetween(column=name, min_value=0))
        if name.endswith(("_rate", "_share", "_affinity")):  # shares of a whole
            suite.append(gx.expectations.ExpectColumnValuesToBeBetween(column=name, min_value=0, max_value=1))
        if name == "text_cosine":
            suite.append(gx.expectations.ExpectColumnValuesToBeBetween(column=name, min_value=-1.001, max_value=1.001))
    return suite


MART_SUITES: tuple[MartSuite, ...] = (
    MartSuite(
        "fct_interactions",
        ("user_id", "item_id", "occurred_at", "event_type", "quantity", "unit_price"),
        _interactions_suite,
        "Volume, null rates, quantity/price ranges, timestamp window and pseudonymised users.",
    ),
    MartSuite("dim_items", ("item_id", "price"), _items_suite, "Volume and price range of the catalogue."),
    MartSuite(
        "dim_items",
        ("has_text",),
        _item_text_suite,
        "Share of items with text to embed; items without text still work, so this only warns.",
        blocking=False,
    ),
    MartSuite(
        "dim_users",
        ("user_id", "first_seen_at", "last_seen_at"),
        _users_suite,
        "Volume, pseudonymised ids and a consistent activity window.",
    ),
    MartSuite(
        "reconciliation",
        ("load_id", "raw_rows", "declared_rows", "kept_rows", "duplicate_rows", "rejected_rows"),
        _reconciliation_suite,
        "raw_rows = kept_rows + duplicate_rows + rejected_rows for every load.",
        prepare=_with_accounted_rows,
    ),
)


def validate_frame(frame: pd.DataFrame, expectations: list[Any]) -> ValidationOutcome:
    """Validate ``frame`` against ``expectations`` in an ephemeral GX context."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_definition = (
        context.data_sources.add_pandas("marts").add_dataframe_asset("frame").add_batch_definition_whole_dataframe("all")
    )
    suite = gx.ExpectationSuite("mart")
    for expectation in expectations:
        suite.add_expectation(expectation)
    result = batch_definition.get_batch(batch_parameters={"dataframe": frame}).validate(suite)
    checks, failures = [], []
    by_type = {}  # GX returns results in its own order; put them back in the suite's
    for outcome in result.results:
        kwargs = {k: v for k, v in outcome.expectation_config.kwargs.items() if k != "batch_id"}
        by_type.setdefault(_identity(outcome.expectation_config.type, kwargs), []).append((kwargs, outcome))
    for expectation in expectations:
        kwargs, outcome = by_type[_identity(expectation.expectation_type, expectation.configuration.kwargs)].pop(0)
        column = kwargs.get("column") or ""
        checks.append({"expectation": _short_name(expectation.expectation_type), "column": column,
                       "bound": _bound(kwargs), "observed": _observed(outcome.result), "passed": bool(outcome.success)})
        if not outcome.success:
            failures.append({"expectation": expectation.expectation_type, "kwargs": kwargs,
                             "observed": _observed(outcome.result)})
    return ValidationOutcome(success=bool(result.success), evaluated=len(result.results), failures=failures,
                             checks=checks)


def _identity(expectation_type: str, kwargs: dict[str, Any]) -> tuple:
    return expectation_type, kwargs.get("column"), kwargs.get("column_A"), kwargs.get("column_B")


def _observed(result: dict[str, Any]) -> str:
    if "observed_value" in result:
        return f"observed {result['observed_value']}"
    if "unexpected_count" not in result:
        return "no observed value"
    unexpected, total = result["unexpected_count"], result.get("element_count", 0)
    text = f"{unexpected:,} of {total:,} rows fail ({result.get('unexpected_percent') or 0:.2f}%)"
    sample = [str(value) for value in result.get("partial_unexpected_list", [])[:3]]
    return f"{text}, e.g. {sample}" if sample else text


def embedding_frame(item_ids: Any, matrix: Any) -> pd.DataFrame:
    """One row per vector with what the embedding suite checks: its norm, its non-finite count, its width."""
    import numpy as np

    matrix = np.asarray(matrix, dtype=np.float32)
    finite = np.isfinite(matrix)
    return pd.DataFrame(
        {
            "item_id": list(item_ids),
            "norm": np.linalg.norm(np.where(finite, matrix, 0.0), axis=1).astype(float),
            "non_finite_values": (~finite).sum(axis=1),
            "dim": np.full(len(matrix), matrix.shape[1] if matrix.ndim == 2 else 0),
        }
    )


def embedding_suite(catalogue_item_ids: list[str], hidden_size: int, norm_tolerance: float = 1e-3) -> list[Any]:
    """One finite, unit-norm vector of the model's width for every item of ``dim_items``, and nothing else."""
    import great_expectations as gx

    return [
        gx.expectations.ExpectTableRowCountToEqual(value=len(catalogue_item_ids)),
        gx.expectations.ExpectColumnValuesToBeUnique(column="item_id"),
        gx.expectations.ExpectColumnValuesToBeInSet(column="item_id", value_set=catalogue_item_ids),
        gx.expectations.ExpectColumnValuesToBeBetween(column="non_finite_values", min_value=0, max_value=0),
        gx.expectations.ExpectColumnValuesToBeBetween(
            column="norm", min_value=1 - norm_tolerance, max_value=1 + norm_tolerance
        ),
        gx.expectations.ExpectColumnValuesToBeInSet(column="dim", value_set=[hidden_size]),
    ]
