"""The synthetic shop: deterministic, Online Retail layout, dirt counts that reconcile, learnable signal."""

from __future__ import annotations

import csv
import dataclasses
import gzip
import json

import numpy as np
import pandas as pd
import pytest

from orchestration.ingest.synthetic import (
    CATEGORIES,
    NON_PRODUCT_CODES,
    ORDER_LINES_HEADER,
    PRODUCT_TYPES,
    SyntheticShopConfig,
    write_synthetic_shop,
)

# Small, three chunks, dirt rates raised so every kind shows up in a few thousand lines.
SMALL = SyntheticShopConfig(
    n_users=300,
    n_items=80,
    n_days=120,
    seed=7,
    chunk_users=100,
    duplicate_rate=0.02,
    cancellation_rate=0.05,
    unmatched_cancellation_share=0.2,
    missing_user_rate=0.05,
    bad_quantity_rate=0.01,
    bad_price_rate=0.01,
    non_product_rate=0.01,
    description_variant_rate=0.05,
    bad_timestamp_rate=0.01,
    garbage_rate=0.005,
)
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"


def _generate(tmp_path_factory, config: SyntheticShopConfig, name: str):
    return write_synthetic_shop(tmp_path_factory.mktemp(name) / "shop", config)


def _read_order_lines(path):
    """(data lines, DataFrame of the lines that split into 8 fields, number that do not)."""
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        text = f.read()
    assert text.endswith("\n")
    lines = text[:-1].split("\n")
    rows = list(csv.reader(lines[1:]))
    good = [r for r in rows if len(r) == 8]
    df = pd.DataFrame(good, columns=ORDER_LINES_HEADER.split(","))
    df["qty"] = df["Quantity"].astype(int)
    df["price"] = df["UnitPrice"].astype(float)
    df["ts"] = pd.to_datetime(df["InvoiceDate"], format=TIMESTAMP_FORMAT, errors="coerce")
    df["is_c"] = df["InvoiceNo"].str.startswith("C")
    return lines, df, len(rows) - len(good)


def _read_items(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _purchases(df: pd.DataFrame) -> pd.DataFrame:
    """Purchase lines as matched cancellations define them: not C, qty > 0, customer, parseable time."""
    return df[~df["is_c"] & (df["qty"] > 0) & (df["CustomerID"] != "") & df["ts"].notna()]


def _clean_product_purchases(df: pd.DataFrame) -> pd.DataFrame:
    p = _purchases(df)
    p = p[~p["StockCode"].isin(NON_PRODUCT_CODES) & (p["price"] > 0)]
    return p.drop_duplicates(subset=["InvoiceNo", "StockCode"])


def _product_type(title: str) -> int:
    """Product type id from a catalogue title (titles end with the type name, before a pack suffix)."""
    core = title.split(",")[0]
    matches = [t for t, spec in enumerate(PRODUCT_TYPES) if core.endswith(" " + spec[0]) or core == spec[0]]
    return max(matches, key=lambda t: len(PRODUCT_TYPES[t][0])) if matches else -1


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    files = _generate(tmp_path_factory, SMALL, "small")
    lines, df, n_garbage = _read_order_lines(files.order_lines)
    return files, lines, df, n_garbage, _read_items(files.items)


def test_same_config_gives_identical_files_and_another_seed_does_not(tmp_path_factory, shop):
    files = shop[0]
    again = _generate(tmp_path_factory, SMALL, "again")
    for name in ("order_lines.csv.gz", "items.csv", "stats.json"):
        assert (files.directory / name).read_bytes() == (again.directory / name).read_bytes(), name
    other = _generate(tmp_path_factory, dataclasses.replace(SMALL, seed=8), "other")
    assert other.order_lines.read_bytes() != files.order_lines.read_bytes()
    assert other.items.read_bytes() != files.items.read_bytes()


def test_generation_with_other_chunk_sizes_is_deterministic_and_consistent(tmp_path_factory):
    config = dataclasses.replace(SMALL, chunk_users=64)
    a, b = _generate(tmp_path_factory, config, "c1"), _generate(tmp_path_factory, config, "c2")
    assert a.order_lines.read_bytes() == b.order_lines.read_bytes()
    one_chunk = _generate(tmp_path_factory, dataclasses.replace(SMALL, chunk_users=10_000), "c3")
    assert one_chunk.items.read_bytes() == a.items.read_bytes()  # the catalogue does not depend on chunking
    _, df, _ = _read_order_lines(a.order_lines)
    # Invoice numbers stay unique across chunks: one customer per invoice.
    assert (df[df["CustomerID"] != ""].groupby("InvoiceNo")["CustomerID"].nunique() == 1).all()
    assert 0.7 < a.stats["n_order_lines"] / one_chunk.stats["n_order_lines"] < 1.3


def test_files_have_the_documented_layout(shop):
    files, lines, df, _, items = shop
    assert lines[0] == ORDER_LINES_HEADER
    assert files.order_lines == files.directory / "order_lines.csv.gz"
    assert files.items == files.directory / "items.csv"
    assert json.loads((files.directory / "stats.json").read_text()) == files.stats
    assert df["InvoiceNo"].str.fullmatch(r"C?\d{6}").all()
    products = ~df["StockCode"].isin(NON_PRODUCT_CODES)
    assert df.loc[products, "StockCode"].str.fullmatch(r"\d{5}[A-Z]?").all()
    assert df["UnitPrice"].str.fullmatch(r"-?\d+\.\d{2}").all()
    assert df["CustomerID"].str.fullmatch(r"(\d+)?").all()
    assert df["Quantity"].str.fullmatch(r"-?\d+").all()
    valid = df["ts"].notna()
    assert df.loc[valid, "InvoiceDate"].str.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d").all()
    assert df.loc[valid, "ts"].min() >= pd.Timestamp("2024-09-03")  # 120 days ending 2024-12-31
    assert df.loc[valid, "ts"].max() <= pd.Timestamp("2024-12-31 23:59:59")
    assert (df["Country"] != "").all() and (df["Country"] == "United Kingdom").mean() > 0.7

    assert list(items.columns) == ["item_id", "title", "description", "category", "brand", "price"]
    assert len(items) == SMALL.n_items == files.stats["n_items"]
    assert items["item_id"].is_unique and items["item_id"].str.fullmatch(r"\d{5}[A-Z]?").all()
    assert items["category"].isin(CATEGORIES).all()
    assert (items["price"].astype(float) > 0).all()
    assert set(df.loc[products, "StockCode"]) <= set(items["item_id"])


def test_an_invoice_is_one_customer_at_one_time(shop):
    _, _, df, _, _ = shop
    valid = df[df["ts"].notna()]
    assert (valid.groupby("InvoiceNo")["ts"].nunique() == 1).all()
    assert (df.groupby("InvoiceNo")["CustomerID"].nunique() == 1).all()
    # Invoice numbers follow time within a customer.
    invoices = valid[valid["CustomerID"] != ""].drop_duplicates("InvoiceNo")
    invoices = invoices.assign(number=invoices["InvoiceNo"].str.lstrip("C").astype(int))
    for _, g in invoices.groupby("CustomerID"):
        assert g.sort_values("number")["ts"].is_monotonic_increasing


def test_row_count_and_dirt_counts_match_stats(shop):
    files, lines, df, n_garbage, items = shop
    stats = files.stats
    assert len(lines) - 1 == stats["n_order_lines"] == len(df) + n_garbage
    assert stats["n_users"] == SMALL.n_users
    titles = dict(zip(items["item_id"], items["title"]))
    product = ~df["StockCode"].isin(NON_PRODUCT_CODES)
    flags = {
        "duplicate_rows": df[ORDER_LINES_HEADER.split(",")].duplicated(keep="first"),
        "cancellation_lines": df["is_c"],
        "missing_user_lines": df["CustomerID"] == "",
        "non_positive_quantity_lines": ~df["is_c"] & (df["qty"] <= 0),
        "non_positive_price_lines": df["price"] <= 0,
        "non_product_lines": ~product,
        "description_variant_lines": product & (df["Description"] != df["StockCode"].map(titles)),
        "bad_timestamp_lines": df["ts"].isna(),
    }
    found = {kind: int(flag.sum()) for kind, flag in flags.items()} | {"garbage_lines": n_garbage}
    assert found == {kind: stats[kind] for kind in found}
    assert all(count > 0 for count in found.values()), found
    # One dirt kind per line.
    assert int(pd.concat(flags, axis=1).sum(axis=1).max()) == 1
    assert (
        stats["purchase_lines"]
        + stats["duplicate_rows"]
        + stats["cancellation_lines"]
        + stats["non_product_lines"]
        + stats["garbage_lines"]
        == stats["n_order_lines"]
    )


def test_garbage_is_one_physical_line_each(shop):
    _, lines, _, n_garbage, _ = shop
    garbage = [line for line in lines[1:] if len(next(csv.reader([line]))) != 8]
    assert len(garbage) == n_garbage
    assert all(line.strip() and "\r" not in line for line in garbage)


def test_matched_cancellations_reverse_an_earlier_purchase(shop):
    files, _, df, _, items = shop
    cancels = df[df["is_c"]]
    assert (cancels["qty"] < 0).all() and (cancels["CustomerID"] != "").all()
    assert cancels["ts"].notna().all() and (cancels["price"] > 0).all()
    assert (
        cancels["StockCode"].map(dict(zip(items["item_id"], items["price"]))) == cancels["UnitPrice"]
    ).all()
    purchases = _purchases(df)[["CustomerID", "StockCode", "qty", "ts"]]
    candidates = cancels.reset_index().merge(
        purchases.assign(qty=-purchases["qty"]),
        on=["CustomerID", "StockCode", "qty"],
        suffixes=("", "_purchase"),
    )
    matched = candidates.loc[candidates["ts_purchase"] < candidates["ts"], "index"].nunique()
    assert matched == files.stats["matched_cancellations"]
    assert 0.6 * len(cancels) < matched < len(cancels)  # mostly exact reversals, some partial/unmatched


def test_canonical_description_is_the_most_frequent_variant(shop):
    _, _, df, _, items = shop
    titles = dict(zip(items["item_id"], items["title"]))
    product = df[~df["StockCode"].isin(NON_PRODUCT_CODES)]
    counts = product.groupby(["StockCode", "Description"]).size().rename("n").reset_index()
    variants_per_code = counts.groupby("StockCode").size()
    assert (variants_per_code > 1).sum() >= 10
    for code, group in counts.groupby("StockCode"):
        ranked = group.sort_values("n", ascending=False)
        assert ranked["Description"].iloc[0] == titles[code]
        assert len(ranked) == 1 or ranked["n"].iloc[0] > ranked["n"].iloc[1]


def test_text_less_items_exist_and_brands_can_be_empty(shop):
    _, _, df, _, items = shop
    textless = items[(items["title"] == "") & (items["description"] == "")]
    assert 1 <= len(textless) <= 0.1 * len(items)
    assert (items["brand"] == "").any() and (items["brand"] != "").mean() > 0.7
    lines = df[df["StockCode"].isin(textless["item_id"])]
    assert len(lines) > 0 and (lines["Description"] == "").all()
    assert (
        items.loc[items["title"] != "", "description"].str.len()
        > items.loc[items["title"] != "", "title"].str.len()
    ).all()


def _repeat_rate(df: pd.DataFrame) -> float:
    """Share of lines re-buying an item the customer bought in an earlier invoice."""
    p = _clean_product_purchases(df).sort_values(["CustomerID", "ts", "InvoiceNo"])
    first = p.groupby(["CustomerID", "StockCode"])["ts"].transform("min")
    return float((p["ts"] > first).mean())


def test_repeat_purchases_exist(tmp_path_factory):
    # A 400-item catalogue, so that chance re-buys (tastes alone) stay well below forced ones.
    config = dataclasses.replace(SMALL, n_items=400)
    with_repeats = _generate(tmp_path_factory, config, "repeat")
    without = _generate(tmp_path_factory, dataclasses.replace(config, repeat_prob=0.0), "norepeat")
    rate = _repeat_rate(_read_order_lines(with_repeats.order_lines)[1])
    baseline = _repeat_rate(_read_order_lines(without.order_lines)[1])
    assert rate > 0.2 and rate > baseline + 0.04, (rate, baseline)


def _complement_rates(df: pd.DataFrame, items: pd.DataFrame, seed: int = 0) -> tuple[float, float]:
    """P(a complement of type A is in the next order | A in this order) and the same for a random order."""
    item_type = {code: _product_type(title) for code, title in zip(items["item_id"], items["title"]) if title}
    names = [spec[0] for spec in PRODUCT_TYPES]
    complements = {t: {names.index(c) for c in spec[4]} for t, spec in enumerate(PRODUCT_TYPES)}
    p = _clean_product_purchases(df)
    p = p.assign(type=p["StockCode"].map(item_type)).dropna(subset=["type"])
    baskets = p.groupby("InvoiceNo").agg(
        customer=("CustomerID", "first"), ts=("ts", "first"), types=("type", set)
    )
    baskets = baskets.sort_values(["customer", "ts"])
    nxt = baskets.groupby("customer")["types"].shift(-1)
    rng = np.random.default_rng(seed)
    all_types = baskets["types"].tolist()
    hits, base = [], []
    for types, following in zip(baskets["types"], nxt):
        if not isinstance(following, set):
            continue
        random_basket = all_types[rng.integers(len(all_types))]
        for t in types:
            if complements[int(t)]:
                hits.append(bool(complements[int(t)] & following))
                base.append(bool(complements[int(t)] & random_basket))
    return float(np.mean(hits)), float(np.mean(base))


def test_complements_raise_the_next_order_probability(tmp_path_factory, shop):
    _, _, df, _, items = shop
    conditional, base_rate = _complement_rates(df, items)
    assert conditional > 1.5 * base_rate, (conditional, base_rate)
    without = _generate(tmp_path_factory, dataclasses.replace(SMALL, complement_prob=0.0), "nocomplement")
    conditional_without, _ = _complement_rates(_read_order_lines(without.order_lines)[1], items)
    assert conditional > conditional_without + 0.05, (conditional, conditional_without)


def test_orders_per_customer_are_heavy_tailed(shop):
    _, _, df, _, _ = shop
    per_customer = df[(df["CustomerID"] != "") & ~df["is_c"]].groupby("CustomerID")["InvoiceNo"].nunique()
    assert per_customer.median() <= 4
    assert per_customer.max() >= 5 * per_customer.median()


def test_popularity_is_skewed(shop):
    _, _, df, _, _ = shop
    counts = _clean_product_purchases(df)["StockCode"].value_counts()
    assert counts.iloc[: len(counts) // 10].sum() > 0.25 * counts.sum()


def test_default_size_suits_a_demo(tmp_path_factory):
    files = _generate(tmp_path_factory, SyntheticShopConfig(), "defaults")
    assert 40_000 <= files.stats["n_order_lines"] <= 80_000
    assert files.stats["n_users"] == 1500 and files.stats["n_items"] == 400


@pytest.mark.parametrize(
    "change",
    [
        {"n_users": 0},
        {"duplicate_rate": 1.5},
        {"end_date": "31/12/2024"},
        {"n_categories": 9},
        {"repeat_prob": 0.9, "complement_prob": 0.2},
        {"abandoned_cart_prob": 1.2},
        {"extra_views_per_order": -1},
        {"anonymous_session_views": 0.5},
    ],
)
def test_invalid_configs_are_rejected(tmp_path, change):
    with pytest.raises(ValueError, match="Invalid SyntheticShopConfig"):
        write_synthetic_shop(tmp_path, dataclasses.replace(SMALL, **change))


# --- the browsing layer: interactions.csv.gz -------------------------------------------------------------------


def _read_browsing(path) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    return frame.assign(ts=pd.to_datetime(frame["timestamp"], format=TIMESTAMP_FORMAT))


def test_browsing_is_reproducible_and_leaves_the_order_lines_alone(tmp_path_factory, shop):
    files = shop[0]
    again = _generate(tmp_path_factory, SMALL, "browse-again")
    assert files.interactions.read_bytes() == again.interactions.read_bytes()
    without = _generate(tmp_path_factory, dataclasses.replace(SMALL, browsing=False), "no-browsing")
    assert without.interactions is None and not (without.directory / "interactions.csv.gz").exists()
    assert without.order_lines.read_bytes() == files.order_lines.read_bytes()
    other = _generate(tmp_path_factory, dataclasses.replace(SMALL, seed=8), "browse-other")
    assert other.interactions.read_bytes() != files.interactions.read_bytes()


def test_browsing_has_the_generic_layout_and_the_counts_of_stats(shop):
    files = shop[0]
    with gzip.open(files.interactions, "rt", encoding="utf-8") as f:
        assert f.readline().rstrip("\n") == "user_id,item_id,timestamp,event_type,quantity,session_id"
    events = _read_browsing(files.interactions)
    stats = files.stats
    assert len(events) == stats["n_interactions"]
    kinds = events["event_type"].value_counts().to_dict()
    assert kinds == {"view": stats["view_events"], "cart": stats["cart_events"]}
    # Views are several times the purchases; every item is a catalogue item.
    assert 2 * stats["purchase_lines"] < stats["view_events"] < 6 * stats["purchase_lines"]
    assert set(events["item_id"]) <= set(shop[4]["item_id"])
    assert (events["session_id"] != "").all() and (events["quantity"].astype(int) >= 1).all()


def test_views_come_before_the_purchase_they_lead_to(shop):
    files, _, df, _, _ = shop
    events = _read_browsing(files.interactions)
    signed = events[events["user_id"] != ""]
    bought = df[(df["CustomerID"] != "") & ~df["is_c"] & df["ts"].notna()]
    orders = bought.groupby(["CustomerID", "ts"]).size().reset_index()[["CustomerID", "ts"]]
    # Each customer's session ends before one of that customer's orders, at most an hour after it began (but for
    # the few orders whose every line had its timestamp garbled).
    sessions = signed.groupby("session_id").agg(user=("user_id", "first"), users=("user_id", "nunique"),
                                                first=("ts", "min"), last=("ts", "max"))
    assert (sessions["users"] == 1).all()
    joined = sessions.reset_index().merge(orders, left_on="user", right_on="CustomerID")
    led = joined[(joined["ts"] > joined["last"]) & (joined["ts"] <= joined["first"] + pd.Timedelta(hours=1))]
    assert set(led["session_id"]) <= set(sessions.index)
    assert len(set(led["session_id"])) >= 0.99 * len(sessions)
    # Most bought lines were viewed by their buyer in the hour before the order, never only after it.
    views = signed[signed["event_type"] == "view"]
    pairs = bought.merge(views, left_on=["CustomerID", "StockCode"], right_on=["user_id", "item_id"],
                         suffixes=("", "_view"))
    before = pairs[(pairs["ts_view"] < pairs["ts"]) & (pairs["ts_view"] >= pairs["ts"] - pd.Timedelta(hours=1))]
    viewed_share = before.groupby(["CustomerID", "StockCode", "ts"]).ngroups / len(bought)
    assert 0.6 < viewed_share < 0.95


def test_abandoned_carts_and_anonymous_sessions_exist(shop):
    files, _, df, _, _ = shop
    events = _read_browsing(files.interactions)
    stats = files.stats
    anonymous = events[events["user_id"] == ""]
    assert anonymous["session_id"].nunique() == stats["anonymous_sessions"] > 0
    assert len(anonymous) == stats["anonymous_events"]
    assert not set(anonymous["session_id"]) & set(events.loc[events["user_id"] != "", "session_id"])
    # A cart whose customer never bought that item at all was left: an abandoned cart.
    carts = events[(events["event_type"] == "cart") & (events["user_id"] != "")]
    bought = set(zip(df["CustomerID"], df["StockCode"]))
    left = [pair for pair in zip(carts["user_id"], carts["item_id"]) if pair not in bought]
    assert len(left) > 0.02 * len(carts)
    assert (anonymous["event_type"] == "cart").any()
