"""Named evaluation protocols: raw or clean interactions -> a reproducible ``Split``.

Each protocol fixes every choice that moves the numbers (filters, cut-offs, tie order, seed), so a result
reported under its name can be reproduced and compared with published ones.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recmodels.sequences import SequenceConfig, build_sequences
from recmodels.splits import Split, leave_one_out, temporal_split

OR_SESSION_MAX_LENGTH = 50  # model input length of the or-session protocol
OR_TEST_CUTOFF = "2011-11-09"  # or-customer-temporal: test targets are purchases from here to the end of data
OR_VALIDATION_CUTOFF = "2011-10-09"  # or-customer-temporal: validation targets are the month before the test


def k_core(
    frame: pd.DataFrame, sequence_column: str, item_column: str, k: int = 5
) -> tuple[pd.DataFrame, int]:
    """Drop rows until every sequence and every item has >= ``k`` rows; returns (rows kept, passes made).

    Dropping a rare item can push a sequence below ``k`` and the other way round, hence the loop until a
    pass removes nothing.
    """
    passes = 0
    while True:
        passes += 1
        sequence_counts = frame.groupby(sequence_column)[item_column].transform("size")
        item_counts = frame.groupby(item_column)[sequence_column].transform("size")
        keep = (sequence_counts >= k) & (item_counts >= k)
        if keep.all():
            return frame, passes
        frame = frame[keep]


def or_session(raw: pd.DataFrame, file_order: bool = False, seed: int = 42) -> tuple[Split, dict]:
    """The ``or-session`` protocol on the raw UCI Online Retail file: an invoice is a sequence of StockCodes.

    Rows without a Description are dropped; (invoice, item, quantity, minute) duplicates are kept once; an
    iterative 5-core filter on invoices and items follows. Items of one invoice share a timestamp, so their
    order is a seeded shuffle (``file_order=True``: the file's row order, the ``or-session-fileorder``
    variant, which leaks whatever order the till printed). Leave-one-out per invoice; models read the last
    ``OR_SESSION_MAX_LENGTH`` items. Cancellation invoices are not treated specially: the protocol is defined
    by the steps above.
    """
    invoice_column = "InvoiceNo" if "InvoiceNo" in raw else "Invoice"
    frame = pd.DataFrame(
        {
            "invoice": raw[invoice_column].astype(str).to_numpy(),
            "item": raw["StockCode"].astype(str).to_numpy(),
            "quantity": raw["Quantity"].to_numpy(),
            "occurred_at": pd.to_datetime(raw["InvoiceDate"]).to_numpy(),
            "description": raw["Description"].to_numpy(),
            "source_row": np.arange(len(raw)),
        }
    )
    info: dict = {"rows_raw": len(frame)}
    description = frame["description"].astype("string").str.strip()
    frame = frame[description.notna() & (description != "")]
    info["rows_with_description"] = len(frame)
    frame = frame.assign(minute=frame["occurred_at"].dt.floor("min"))
    # Of duplicates keep the earliest, so the result does not depend on which copy the file lists first.
    frame = frame.sort_values(["occurred_at", "source_row"], kind="stable")
    frame = frame.drop_duplicates(["invoice", "item", "quantity", "minute"], keep="first")
    info["rows_deduplicated"] = len(frame)
    frame, info["core_passes"] = k_core(frame, "invoice", "item", k=5)

    events = frame.rename(columns={"invoice": "basket_id", "item": "item_id"})
    config = SequenceConfig(
        key="basket",
        max_length=OR_SESSION_MAX_LENGTH,
        tie_break="file" if file_order else "seeded",
        seed=seed,
    )
    sequences, keys, timestamps, item_index = build_sequences(events, config)
    name = "or-session-fileorder" if file_order else "or-session"
    split = leave_one_out(
        sequences, n_items=item_index.n_items(), keys=keys, name=name, item_ids=item_index.item_ids,
        # With the file order the order of an invoice's rows is known, so training must not reshuffle it.
        timestamps=None if file_order else timestamps,
    )
    info.update(
        sequences=len(sequences),
        items=item_index.n_items(),
        interactions=int(sum(len(s) for s in sequences)),
        evaluated_sequences=len(split.test.targets),
        max_length=OR_SESSION_MAX_LENGTH,
        item_index=item_index,
    )
    return split, info


def _purchases(fct: pd.DataFrame) -> pd.DataFrame:
    """Purchase events of known customers (guest checkouts have no sequence to extend)."""
    events = fct[fct["event_type"] == "purchase"] if "event_type" in fct else fct
    return events[events["user_id"].notna()]


def or_customer_temporal(
    fct: pd.DataFrame,
    seed: int = 42,
    test_cutoff=OR_TEST_CUTOFF,
    validation_cutoff=OR_VALIDATION_CUTOFF,
    test_end=None,
) -> Split:
    """The ``or-customer-temporal`` protocol on ``marts.fct_interactions`` of Online Retail.

    Sequences are customers' purchases. Test: trained on everything before 2011-11-09, targets are the
    distinct items each returning customer buys from then to the end of data (repeat purchases included).
    Validation: trained before 2011-10-09, targets are the following month's purchases. Other cut-offs give the
    same construction on earlier months (e.g. more months to train a re-ranker on).
    """
    return temporal_split(
        _purchases(fct),
        SequenceConfig(key="user", seed=seed),
        test_cutoff=test_cutoff,
        validation_cutoff=validation_cutoff,
        test_end=test_end,
        name="or-customer-temporal",
    )


def generic_loo(interactions: pd.DataFrame, config: SequenceConfig | None = None) -> Split:
    """Leave-one-out by user on any dataset in the ``fct_interactions`` shape (all event types kept)."""
    config = config or SequenceConfig(key="user")
    events = interactions[interactions["user_id"].notna()]
    sequences, keys, timestamps, item_index = build_sequences(events, config)
    return leave_one_out(
        sequences, n_items=item_index.n_items(), keys=keys, name="generic-loo", item_ids=item_index.item_ids,
        timestamps=timestamps,
    )
