import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from recmodels.metrics import ranking_metrics
from recmodels.ranking import (
    FEATURE_DESCRIPTIONS,
    NEVER_DAYS,
    LambdaRanker,
    RankerConfig,
    candidate_recall,
    compute_features,
    feature_columns,
    future_event_rows,
    generate_candidates,
    leak_suspects,
    rerank_topk,
    single_feature_auc,
)

# ------------------------------------------------------------------------------------------- candidates

# Toy scorers over 6 items: history [r] asks for row r of a fixed table (column 0 = PAD).
TABLE_A = np.array(
    [
        [-np.inf, 0.1, 0.9, 0.5, 0.5, 0.2, 0.0],  # ranking 2, 3, 4 (ties to the lower id), 5, 1, 6
        [-np.inf, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0],  # ranking 1..6
    ],
    dtype=np.float32,
)
TABLE_B = np.array(
    [
        [-np.inf, 0.8, 0.7, 0.1, 0.0, 0.3, 0.9],  # ranking 6, 1, 2, 5, 3, 4
        [-np.inf, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0],  # the same ranking as A: every second pick is a repeat
    ],
    dtype=np.float32,
)
HISTORIES = [np.array([0]), np.array([1])]


def _scorer(table):
    return lambda histories: table[[int(h[0]) for h in histories]]


SOURCES = {"a": _scorer(TABLE_A), "b": _scorer(TABLE_B)}


def _items(candidates, row):
    return candidates.loc[candidates["row"] == row, "item"].tolist()


def test_candidates_round_robin_by_rank_skipping_taken_items():
    # Row 0: rank 1 -> a:2, b:6; rank 2 -> a:3, b:1; rank 3 -> a:4, b:2 (taken); rank 4 -> a:5, b:5 (taken).
    expected = {3: [2, 3, 6], 4: [1, 2, 3, 6], 5: [1, 2, 3, 4, 6], 6: list(range(1, 7)), 50: list(range(1, 7))}
    for n, items in expected.items():
        candidates = generate_candidates(SOURCES, HISTORIES, n_candidates=n)
        assert _items(candidates, 0) == items
        # Row 1: identical rankings, so the union is just the top n of that ranking.
        assert _items(candidates, 1) == list(range(1, min(n, 6) + 1))
    # The sources' order decides who picks first: b:6, a:2, b:1.
    swapped = generate_candidates({"b": SOURCES["b"], "a": SOURCES["a"]}, HISTORIES, n_candidates=3)
    assert _items(swapped, 0) == [1, 2, 6]


def test_candidates_carry_every_source_score_and_full_rank():
    candidates = generate_candidates(SOURCES, HISTORIES, n_candidates=4)
    assert list(candidates.columns) == ["row", "item", "a_score", "a_rank", "b_score", "b_rank"]
    row0 = candidates[candidates["row"] == 0].set_index("item")
    assert row0["a_rank"].to_dict() == {1: 5, 2: 1, 3: 2, 6: 6}
    assert row0["b_rank"].to_dict() == {1: 2, 2: 3, 3: 5, 6: 1}
    np.testing.assert_array_equal(row0["a_score"].to_numpy(), TABLE_A[0, [1, 2, 3, 6]].astype(np.float64))
    np.testing.assert_array_equal(row0["b_score"].to_numpy(), TABLE_B[0, [1, 2, 3, 6]].astype(np.float64))
    assert not candidates.isna().any().any()
    assert (candidates[["row", "item"]].diff().dropna().apply(tuple, axis=1) > (0, 0)).all()  # sorted


def test_candidates_do_not_depend_on_batch_size():
    many = [HISTORIES[i % 2] for i in range(7)]
    whole = generate_candidates(SOURCES, many, n_candidates=4, batch_size=1024)
    batched = generate_candidates(SOURCES, many, n_candidates=4, batch_size=3)
    pd.testing.assert_frame_equal(whole, batched)
    assert sorted(whole["row"].unique()) == list(range(7))
    assert generate_candidates(SOURCES, [], n_candidates=4).empty


def _sorted_candidates(sources, histories, n_candidates):
    """The candidates by the definition: every source's full stable ranking (NaN with -inf), round-robin."""
    rows = []
    for row, history in enumerate(histories):
        matrices = {name: np.asarray(scorer([history]), np.float64)[0, 1:] for name, scorer in sources.items()}
        orders = {name: np.argsort(-np.where(np.isnan(m), -np.inf, m), kind="stable") + 1
                  for name, m in matrices.items()}
        taken = []
        for position in range(len(next(iter(orders.values())))):
            for order in orders.values():
                if len(taken) < n_candidates and order[position] not in taken:
                    taken.append(int(order[position]))
        for item in sorted(taken):
            columns = {"row": row, "item": item}
            for name, order in orders.items():
                columns[f"{name}_score"] = float(matrices[name][item - 1])
                columns[f"{name}_rank"] = int(np.flatnonzero(order == item)[0]) + 1
            rows.append(columns)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("seed", range(4))
def test_candidates_equal_the_full_rankings_with_ties_and_nan(seed):
    # Few distinct values, so ties straddle every cut; NaN and -inf rank last, ties to the lower id.
    rng = np.random.default_rng(seed)
    tables = {name: rng.integers(0, 6, size=(5, 41)).astype(np.float32) for name in ("a", "b", "c")}
    tables["b"][rng.random((5, 41)) < 0.2] = np.nan
    tables["c"][rng.random((5, 41)) < 0.2] = -np.inf
    tables["c"][3] = 1.0  # a constant row: every rank is a tie
    sources = {name: _scorer(np.where(np.arange(41) == 0, -np.inf, table)) for name, table in tables.items()}
    histories = [np.array([row]) for row in range(5)]
    for n in (1, 7, 25, 40, 80):
        found = generate_candidates(sources, histories, n_candidates=n, batch_size=2)
        pd.testing.assert_frame_equal(found, _sorted_candidates(sources, histories, n), check_dtype=False)


def test_candidate_recall_by_hand():
    candidates = generate_candidates(SOURCES, HISTORIES, n_candidates=4)  # row 0 {1,2,3,6}, row 1 {1,2,3,4}
    # Pairs: (0, 3) hit, (0, 5) miss, (1, 4) hit -> 2 / 3.
    assert candidate_recall(candidates, [np.array([3, 5]), np.array([4])]) == pytest.approx(2 / 3)


# --------------------------------------------------------------------------------------------- features

CUTOFF = pd.Timestamp("2024-02-01")
# 3 users, 5 items, 11 events before the cut-off; the last two (at and after the cut-off) must be ignored.
EVENTS = pd.DataFrame(
    [
        ("a", 1, "2024-01-01 00:00", 2, 1.0, "b1"),
        ("a", 2, "2024-01-01 00:00", 1, 3.0, "b1"),
        ("a", 1, "2024-01-21 10:00", 1, 1.0, "b2"),
        ("a", 3, "2024-01-21 12:00", 1, 5.0, "b3"),
        ("b", 1, "2023-12-01", 1, 1.0, "b4"),
        ("b", 4, "2023-12-01", 2, 2.0, "b4"),
        ("b", 2, "2024-01-26", 1, 3.0, "b5"),
        ("b", 2, "2024-01-31", 1, 4.0, "b6"),
        ("c", 3, "2024-01-10", 1, 5.0, "b7"),
        ("c", 3, "2024-01-30", 1, 6.0, "b8"),
        ("c", 1, "2024-01-30", 3, 1.0, "b8"),
        ("c", 1, "2024-02-05", 10, 9.0, "b9"),  # after the cut-off
        ("a", 5, "2024-02-01 00:00", 1, 7.0, "b10"),  # exactly at the cut-off: also the future
    ],
    columns=["user_key", "item", "occurred_at", "quantity", "unit_price", "basket_id"],
).assign(occurred_at=lambda f: pd.to_datetime(f["occurred_at"], format="ISO8601"))
ROW_KEYS = np.array(["a", "b", "c", "d"])  # d has no events at all
CANDIDATES = pd.DataFrame(
    {"row": [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3], "item": [1, 2, 3, 5, 1, 2, 3, 4, 1, 3, 2, 5]}
)
ITEM_TEXT = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [0, 0], [3, 0]], dtype=np.float32)  # item 4: no text
ATTRIBUTES = pd.DataFrame(
    {"category": ["x", "x", "y", None, "y"], "brand": ["p", "q", "p", "q", None]}, index=[1, 2, 3, 4, 5]
)
A_LAST, A_PAIR_1 = 10.5, 10 + 14 / 24  # a's last event (01-21 12:00) and last item 1 (01-21 10:00)

# Hand-computed per item: purchases, 7d, 30d, trend, price, age.
ITEM_EXPECTED = {
    1: (4, 1, 2, (1 / 7) / (2 / 30), 1.0, 62.0),
    2: (3, 2, 2, (2 / 7) / (2 / 30), 3.0, 31.0),
    3: (3, 1, 3, (1 / 7) / (3 / 30), 5.0, 22.0),
    4: (1, 0, 0, 0.0, 2.0, 62.0),
    5: (0, 0, 0, 0.0, np.nan, 0.0),
}
# Per user: orders, events, days since last, days between orders, monetary, median paid price.
USER_EXPECTED = {
    "a": (3, 4, A_LAST, 20.5 / 2, 11.0, 2.0),
    "b": (3, 4, 1.0, 61 / 2, 12.0, 2.5),
    "c": (2, 3, 2.0, 20.0, 14.0, 5.0),
    "d": (0, 0, NEVER_DAYS, NEVER_DAYS, 0.0, np.nan),
}
# Per (user, item): purchases, days since; text cosine (recent_items=2); category and brand shares.
COS_67 = math.cos(math.radians(67.5))  # a's profile: mean of items 1 and 3 -> 22.5 degrees off item 1
PAIR_EXPECTED = {
    ("a", 1): (2, A_PAIR_1, math.cos(math.radians(22.5)), 3 / 4, 3 / 4),
    ("a", 2): (1, 31.0, COS_67, 3 / 4, 1 / 4),  # item 2 is outside a's 2 most recent items
    ("a", 3): (1, A_LAST, 1.0 * math.cos(math.radians(22.5)), 1 / 4, 3 / 4),
    ("a", 5): (0, NEVER_DAYS, math.cos(math.radians(22.5)), 1 / 4, 0.0),  # the at-cut-off event is ignored
    ("b", 1): (1, 62.0, 0.0, 3 / 4, 1 / 4),  # b's recent items: 4 (no text) and 2
    ("b", 2): (2, 1.0, 1.0, 3 / 4, 3 / 4),
    ("b", 3): (0, NEVER_DAYS, math.sqrt(0.5), 0.0, 1 / 4),
    ("b", 4): (1, 62.0, 0.0, 0.0, 3 / 4),  # item 4 has neither text nor category
    ("c", 1): (1, 2.0, math.cos(math.radians(22.5)), 1 / 3, 1.0),  # ignores c's purchase after the cut-off
    ("c", 3): (2, 2.0, math.cos(math.radians(22.5)), 2 / 3, 1.0),
    ("d", 2): (0, NEVER_DAYS, 0.0, 0.0, 0.0),
    ("d", 5): (0, NEVER_DAYS, 0.0, 0.0, 0.0),
}


def _features(events=EVENTS, **kwargs):
    kwargs = {"item_text": ITEM_TEXT, "item_attributes": ATTRIBUTES, "recent_items": 2} | kwargs
    return compute_features(CANDIDATES, ROW_KEYS, events, CUTOFF, **kwargs)


def test_features_match_hand_computed_values():
    features = _features()
    from recmodels.ranking.behaviour import BEHAVIOUR_FEATURES

    # Every feature but the behaviour ones, which need views, carts or favourites (test_behaviour_features).
    assert feature_columns(features) == [name for name in FEATURE_DESCRIPTIONS if name not in BEHAVIOUR_FEATURES]
    for record in features.to_dict("records"):
        user, item = ROW_KEYS[record["row"]], record["item"]
        purchases, last_7, last_30, trend, price, age = ITEM_EXPECTED[item]
        orders, n_events, since, between, monetary, user_price = USER_EXPECTED[user]
        pair_purchases, pair_since, cosine, category, brand = PAIR_EXPECTED[(user, item)]
        # NaN only for an item without a price; neutral 1 for a user without one.
        price_vs_user = np.nan if np.isnan(price) else 1.0 if np.isnan(user_price) else price / user_price
        expected = {
            "item_purchases": purchases, "item_purchases_7d": last_7, "item_purchases_30d": last_30,
            "item_trend": trend, "item_price": price, "item_price_vs_user": price_vs_user,
            "item_age_days": age, "user_orders": orders, "user_events": n_events,
            "user_days_since_last": since, "user_days_between_orders": between, "user_monetary": monetary,
            "user_item_purchases": pair_purchases, "user_item_days_since": pair_since,
            "text_cosine": cosine, "category_affinity": category, "brand_affinity": brand,
        }  # fmt: skip
        for name, value in expected.items():
            assert record[name] == pytest.approx(value, nan_ok=True), (user, item, name)


def test_features_ignore_events_at_or_after_the_cutoff():
    with_future = _features()
    without_future = _features(events=EVENTS[EVENTS["occurred_at"] < CUTOFF])
    pd.testing.assert_frame_equal(with_future, without_future)
    as_of = with_future["features_as_of"]
    assert (as_of.dropna() < CUTOFF).all() and future_event_rows(with_future, CUTOFF) == 0
    # The user's or the item's last event, whichever is later; NaT for a cold user and an unsold item.
    by_pair = with_future.set_index([ROW_KEYS[with_future["row"]], with_future["item"]])["features_as_of"]
    assert by_pair[("a", 5)] == pd.Timestamp("2024-01-21 12:00")
    assert by_pair[("c", 3)] == pd.Timestamp("2024-01-30")  # both c's and item 3's last event
    assert by_pair[("a", 2)] == pd.Timestamp("2024-01-31")  # item 2's last event (by b) is later than a's
    assert by_pair[("b", 4)] == pd.Timestamp("2024-01-31")
    assert pd.isna(by_pair[("d", 5)])


def test_features_without_basket_id_count_days_and_without_optional_inputs():
    features = compute_features(CANDIDATES, ROW_KEYS, EVENTS.drop(columns="basket_id"), CUTOFF)
    a = features[features["row"] == 0].iloc[0]
    assert a["user_orders"] == 2  # b2 and b3 fall on the same day
    assert a["user_days_between_orders"] == pytest.approx(20 + 10 / 24)  # 01-01 00:00 -> 01-21 10:00
    assert not {"text_cosine", "category_affinity", "brand_affinity"} & set(features.columns)
    values = features[feature_columns(features)].drop(columns=["item_price", "item_price_vs_user"])
    assert not values.isna().any().any()


def test_features_with_no_past_events_do_not_crash():
    features = _features(events=EVENTS[EVENTS["occurred_at"] >= CUTOFF])
    assert (features["user_events"] == 0).all() and (features["user_item_days_since"] == NEVER_DAYS).all()
    assert (features["text_cosine"] == 0).all() and features["features_as_of"].isna().all()


def test_features_with_a_cutoff_per_row_read_nothing_after_each_rows_own():
    from recmodels.ranking.features import compute_features as features_of

    same = np.full(len(ROW_KEYS), np.datetime64(CUTOFF, "ns"))
    pd.testing.assert_frame_equal(_features(), features_of(CANDIDATES, ROW_KEYS, EVENTS, same, item_text=ITEM_TEXT,
                                                           item_attributes=ATTRIBUTES, recent_items=2))
    earlier = CUTOFF - pd.Timedelta(days=10)
    own = same.copy()
    own[2] = np.datetime64(earlier, "ns")  # c's row: ten days earlier
    per_row = features_of(CANDIDATES, ROW_KEYS, EVENTS, own, item_text=ITEM_TEXT, recent_items=2)
    at_earlier = features_of(CANDIDATES[CANDIDATES["row"] == 2], ROW_KEYS, EVENTS, earlier, item_text=ITEM_TEXT,
                             recent_items=2)
    pd.testing.assert_frame_equal(per_row[per_row["row"] == 2], at_earlier)
    assert list(per_row.index) == list(CANDIDATES.index)  # the candidates' order is kept
    assert future_event_rows(per_row, own) == 0 and future_event_rows(_features(), own) > 0


def test_cutoff_groups_keep_equal_cutoffs_together_and_take_each_groups_earliest():
    from recmodels.ranking.features import cutoff_groups

    d1, d2, d3 = (np.datetime64(f"2024-01-0{d}", "ns") for d in (1, 2, 3))
    group, at = cutoff_groups(np.array([d3, d1, d2, d1]), max_groups=2)
    # Rows before each distinct time: d1 0, d2 2, d3 3; times 2 groups // 4 rows -> 0, 1, 1.
    assert group.tolist() == [1, 0, 1, 0] and list(at) == [d1, d2]
    with pytest.raises(ValueError, match="NaT"):
        cutoff_groups(np.array([d1, np.datetime64("NaT", "ns")]))


# ------------------------------------------------------------------------------------------- leak checks


def test_leak_suspects_flag_the_label_not_noise():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300).astype(float)
    frame = pd.DataFrame(
        {"leak": labels, "inverted": 1 - labels + rng.normal(0, 0.01, 300), "noise": rng.random(300)}
    )
    suspects = leak_suspects(frame, labels, ["leak", "inverted", "noise"])
    assert set(suspects) == {"leak", "inverted"} and suspects["leak"] == pytest.approx(1.0)
    assert 0.5 <= single_feature_auc(frame, labels, ["noise"])["noise"] < 0.6
    unlabelled = labels.copy()
    unlabelled[:10] = np.nan
    assert "leak" in leak_suspects(frame, unlabelled, ["leak"])
    with pytest.raises(ValueError, match="both classes"):
        leak_suspects(frame, np.zeros(300), ["leak"])


def test_future_event_rows_counts_injected_rows():
    features = _features()
    features.loc[[1, 4], "features_as_of"] = [CUTOFF, CUTOFF + pd.Timedelta(days=3)]
    assert future_event_rows(features, CUTOFF) == 2


# ------------------------------------------------------------------------------------------------ ranker

FAST = RankerConfig(n_estimators=60, min_data_in_leaf=5, early_stopping_rounds=10, num_threads=1, n_models=2)


def _planted(seed, n_rows=150, per_row=20, n_without_positive=0):
    """Candidates whose label is x > 0.5 after noise; ``z`` is pure noise."""
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(n_rows), per_row)
    x = rng.random(len(rows))
    labels = (x + rng.normal(0, 0.1, len(rows)) > 0.5).astype(int)
    labels[rows < n_without_positive] = 0
    frame = pd.DataFrame({"row": rows, "item": np.tile(np.arange(1, per_row + 1), n_rows), "x": x})
    frame["z"] = rng.random(len(rows))
    return frame, labels


def _ndcg10(frame, labels, scores):
    n_rows = int(frame["row"].max()) + 1
    rows, items = frame["row"].to_numpy(), frame["item"].to_numpy()
    targets = [items[(rows == r) & (labels == 1)] for r in range(n_rows)]
    keep = [r for r in range(n_rows) if len(targets[r])]
    topk = rerank_topk(frame, scores, n_rows, 10)[keep]
    return ranking_metrics(topk, [targets[r] for r in keep], ks=(10,))["ndcg@10"]


def test_ranker_learns_a_planted_signal_deterministically_and_round_trips(tmp_path):
    frame, labels = _planted(0, n_without_positive=10)
    # Shuffled rows: fit must group them itself.
    shuffle = np.random.default_rng(1).permutation(len(frame))
    frame, labels = frame.iloc[shuffle].reset_index(drop=True), labels[shuffle]
    ranker = LambdaRanker(FAST).fit(frame, labels, frame["row"].to_numpy(), ["x", "z"])
    assert ranker.n_groups_dropped_ == 10 and len(ranker.best_iterations_) == FAST.n_models
    assert all(1 <= rounds <= FAST.n_estimators for rounds in ranker.best_iterations_)
    assert ranker.valid_ndcg_ > 0.9
    test, test_labels = _planted(2)
    random_ndcg = _ndcg10(test, test_labels, np.random.default_rng(3).random(len(test)))
    assert _ndcg10(test, test_labels, ranker.score(test)) > random_ndcg + 0.2
    importance = ranker.feature_importance()
    assert list(importance.columns) == ["feature", "gain", "split"] and importance["feature"][0] == "x"

    again = LambdaRanker(FAST).fit(frame, labels, frame["row"].to_numpy(), ["x", "z"])
    np.testing.assert_array_equal(ranker.score(test), again.score(test))

    ranker.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ranker-0.txt", "ranker-1.txt", "ranker.json"]
    meta = json.loads((tmp_path / "ranker.json").read_text())
    assert meta["feature_names"] == ["x", "z"] and meta["best_iterations"] == ranker.best_iterations_
    loaded = LambdaRanker.load(tmp_path)
    np.testing.assert_array_equal(loaded.score(test), ranker.score(test))
    assert loaded.config == FAST
    pd.testing.assert_frame_equal(loaded.feature_importance(), importance)


def test_ranker_averages_its_models_and_loads_the_single_model_format(tmp_path):
    frame, labels = _planted(0)
    ranker = LambdaRanker(FAST).fit(frame, labels, frame["row"].to_numpy(), ["x", "z"])
    test, _ = _planted(2)
    x = test[["x", "z"]].to_numpy(np.float64)
    members = [b.predict(x, num_iteration=n) for b, n in zip(ranker.boosters_, ranker.best_iterations_)]
    assert not np.array_equal(members[0], members[1])  # different held-out users and seeds
    np.testing.assert_allclose(ranker.score(test), (members[0] + members[1]) / 2)

    # Format 1 (before ensembles): one model in ranker.txt; a champion registered then must still load.
    single = LambdaRanker(replace(FAST, n_models=1)).fit(frame, labels, frame["row"].to_numpy(), ["x", "z"])
    single.save(tmp_path)
    (tmp_path / "ranker-0.txt").rename(tmp_path / "ranker.txt")
    meta = json.loads((tmp_path / "ranker.json").read_text())
    config = {k: v for k, v in meta["config"].items() if k != "n_models"}
    (tmp_path / "ranker.json").write_text(json.dumps({
        "format_version": 1, "feature_names": meta["feature_names"], "config": config,
        "best_iteration": single.best_iterations_[0], "valid_ndcg": meta["valid_ndcg"], "n_groups_dropped": 0}))
    old = LambdaRanker.load(tmp_path)
    assert old.config.n_models == 1 and old.best_iterations_ == single.best_iterations_
    np.testing.assert_array_equal(old.score(test), single.score(test))


def test_ranker_refuses_missing_columns_and_no_positive():
    frame, labels = _planted(0, n_rows=20)
    with pytest.raises(ValueError, match="'price'"):
        LambdaRanker(FAST).fit(frame, labels, frame["row"].to_numpy(), ["x", "price"])
    ranker = LambdaRanker(FAST).fit(frame, labels, frame["row"].to_numpy(), ["x", "z"])
    with pytest.raises(ValueError, match="'z'"):
        ranker.score(frame.drop(columns="z"))
    with pytest.raises(ValueError, match="no positive"):
        LambdaRanker(FAST).fit(frame, np.zeros(len(frame), int), frame["row"].to_numpy(), ["x"])


# ------------------------------------------------------------------------------------------- re-ranking


def test_rerank_topk_orders_breaks_ties_and_pads():
    candidates = pd.DataFrame({"row": [0, 0, 0, 1, 1, 2, 2], "item": [7, 2, 5, 3, 1, 4, 6]})
    scores = np.array([0.9, 0.9, 0.1, 0.2, 0.5, np.nan, -1.0])
    topk = rerank_topk(candidates, scores, n_rows=4, k=3)
    assert topk.tolist() == [[2, 7, 5], [1, 3, 0], [6, 4, 0], [0, 0, 0]]
    # Padding is a miss: row 1 hits 3 at rank 2 of targets {3, 9}; row 3 (no candidates) hits nothing.
    metrics = ranking_metrics(topk[[1, 3]], [np.array([3, 9]), np.array([1])], ks=(3,))
    assert metrics["recall@3"] == pytest.approx(0.25)
    assert metrics["ndcg@3"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)) / 2)


def test_candidate_labels_and_purchase_events_by_hand():
    from recmodels.ranking import candidate_labels, purchase_events, ranker_feature_names

    candidates = pd.DataFrame({"row": [0, 0, 1, 1], "item": [1, 2, 2, 3], "a_score": 0.0, "a_rank": 1})
    assert candidate_labels(candidates, [np.array([2]), np.array([1, 3])]).tolist() == [0, 1, 0, 1]
    assert ranker_feature_names(candidates) == ["a_score", "a_rank"]
    fct = pd.DataFrame({
        "user_id": ["u1", None, "u2", "u2"], "item_id": ["B", "A", "Z", "A"], "event_type": "purchase",
        "occurred_at": pd.to_datetime(["2011-01-01"] * 4), "quantity": [1, 2, 3, 4],
        "unit_price": [1.0, 2.0, 3.0, 4.0], "basket_id": ["b1", "b2", "b3", "b3"],
    })
    events = purchase_events(fct, np.array(["A", "B"]))
    # The guest row has no customer and item Z is outside the index: both left out.
    assert events["user_key"].tolist() == ["u1", "u2"] and events["item"].tolist() == [2, 1]
    assert events["quantity"].tolist() == [1.0, 4.0]


# Re-ordering habits, by hand from EVENTS before the cut-off (orders = distinct basket_id):
# per (user, item): orders, events in 90 days, mean days between its orders, days since / interval.
A_1_INTERVAL = 20 + 10 / 24  # a ordered item 1 in b1 (01-01 00:00) and b2 (01-21 10:00)
REPEAT_EXPECTED = {
    ("a", 1): (2, 2, A_1_INTERVAL, A_PAIR_1 / A_1_INTERVAL),
    ("a", 2): (1, 1, NEVER_DAYS, 0.0),
    ("a", 3): (1, 1, NEVER_DAYS, 0.0),
    ("a", 5): (0, 0, NEVER_DAYS, 0.0),
    ("b", 1): (1, 1, NEVER_DAYS, 0.0),
    ("b", 2): (2, 2, 5.0, 1.0 / 5.0),  # b5 (01-26) and b6 (01-31); last one a day before the cut-off
    ("b", 3): (0, 0, NEVER_DAYS, 0.0),
    ("b", 4): (1, 1, NEVER_DAYS, 0.0),
    ("c", 1): (1, 1, NEVER_DAYS, 0.0),
    ("c", 3): (2, 2, 20.0, 2.0 / 20.0),
    ("d", 2): (0, 0, NEVER_DAYS, 0.0),
    ("d", 5): (0, 0, NEVER_DAYS, 0.0),
}
ITEM_REPEAT_RATE = {1: 1 / 3, 2: 1 / 2, 3: 1 / 2, 4: 0.0, 5: 0.0}  # buyers with 2+ orders of it / its buyers
USER_REPEAT_SHARE = {"a": 1 / 2, "b": 1 / 2, "c": 1.0, "d": 0.0}  # re-ordering orders / orders after the first


def test_repeat_features_match_hand_computed_values():
    for record in _features().to_dict("records"):
        user, item = ROW_KEYS[record["row"]], record["item"]
        orders, recent, interval, due = REPEAT_EXPECTED[(user, item)]
        expected = {"user_item_orders": orders, "user_item_purchases_90d": recent, "user_item_interval_days": interval,
                    "user_item_due": due, "item_repeat_rate": ITEM_REPEAT_RATE[item],
                    "user_repeat_share": USER_REPEAT_SHARE[user]}
        for name, value in expected.items():
            assert record[name] == pytest.approx(value), (user, item, name)


# Quantities, by hand from EVENTS before the cut-off. Item medians of units per line: item 1 [2, 1, 1, 3] -> 1.5,
# items 2 and 3 -> 1, item 4 -> 2, item 5 never sold -> 0. Users' mean units per line: a 5/4, b 5/4, c 5/3, d 0.
ITEM_MEDIAN_QUANTITY = {1: 1.5, 2: 1.0, 3: 1.0, 4: 2.0, 5: 0.0}
USER_MEAN_QUANTITY = {"a": 5 / 4, "b": 5 / 4, "c": 5 / 3, "d": 0.0}
# a bought 2 units of item 1 in b1 (01-01 00:00) and 1 in b2 (01-21 10:00): 2 units over A_1_INTERVAL days, so the
# last unit lasts A_1_INTERVAL / 2 days, and A_PAIR_1 days have passed since.
# Per (user, item): units, mean units per line, units of the latest order, mean / item median, share of the
# user's spend (a 11, b 12, c 14), days of stock left.
QUANTITY_EXPECTED = {
    ("a", 1): (3, 1.5, 1, 1.0, 3 / 11, A_1_INTERVAL / 2 - A_PAIR_1),  # negative: overdue
    ("a", 2): (1, 1.0, 1, 1.0, 3 / 11, NEVER_DAYS),
    ("a", 3): (1, 1.0, 1, 1.0, 5 / 11, NEVER_DAYS),
    ("a", 5): (0, 0.0, 0, 0.0, 0.0, NEVER_DAYS),
    ("b", 1): (1, 1.0, 1, 1 / 1.5, 1 / 12, NEVER_DAYS),
    ("b", 2): (2, 1.0, 1, 1.0, 7 / 12, 1 / (1 / 5) - 1),  # 1 unit per 5 days; the latest order was a day ago
    ("b", 3): (0, 0.0, 0, 0.0, 0.0, NEVER_DAYS),
    ("b", 4): (2, 2.0, 2, 1.0, 4 / 12, NEVER_DAYS),
    ("c", 1): (3, 3.0, 3, 3 / 1.5, 3 / 14, NEVER_DAYS),  # the 10 units after the cut-off do not count
    ("c", 3): (2, 1.0, 1, 1.0, 11 / 14, 1 / (1 / 20) - 2),
    ("d", 2): (0, 0.0, 0, 0.0, 0.0, NEVER_DAYS),
    ("d", 5): (0, 0.0, 0, 0.0, 0.0, NEVER_DAYS),
}


def test_quantity_features_match_hand_computed_values():
    features = _features()
    assert (features["days_of_stock_left"] < 0).sum() == 1  # only a's item 1
    for record in features.to_dict("records"):
        user, item = ROW_KEYS[record["row"]], record["item"]
        units, mean_units, last_units, ratio, spend_share, stock_left = QUANTITY_EXPECTED[(user, item)]
        expected = {"item_median_quantity": ITEM_MEDIAN_QUANTITY[item], "user_mean_quantity": USER_MEAN_QUANTITY[user],
                    "user_item_quantity": units, "user_item_mean_quantity": mean_units,
                    "user_item_last_quantity": last_units, "user_item_quantity_ratio": ratio,
                    "user_item_spend_share": spend_share, "days_of_stock_left": stock_left}
        for name, value in expected.items():
            assert record[name] == pytest.approx(value), (user, item, name)


# ------------------------------------------------------------------------------------------- shared helpers


def test_price_vs_user_is_neutral_without_a_reference_and_nan_without_a_price():
    from recmodels.ranking import price_vs_user

    ratio = price_vs_user(np.array([2.0, 2.0, 2.0, np.nan, 3.0]), np.array([4.0, 0.0, np.nan, 1.0, -1.0]))
    np.testing.assert_array_equal(ratio, [0.5, 1.0, 1.0, np.nan, 1.0])


def test_labelled_candidates_equal_the_steps_it_runs():
    from recmodels.ranking import candidate_labels, labelled_candidates
    from recmodels.splits import EvalSet

    rows = EvalSet(histories=HISTORIES, targets=[np.array([2, 5]), np.array([1])], keys=np.array(["a", "b"]))
    features, labels = labelled_candidates(SOURCES, rows, EVENTS, CUTOFF, n_candidates=4, recent_items=2)
    expected = compute_features(generate_candidates(SOURCES, HISTORIES, 4), rows.keys, EVENTS, CUTOFF,
                                recent_items=2)
    pd.testing.assert_frame_equal(features, expected, check_exact=True)
    np.testing.assert_array_equal(labels, candidate_labels(expected, rows.targets))
    assert labels.sum() == 2  # row 0's item 5 is not among its 4 candidates


def test_the_ranker_is_sized_by_its_training_customers():
    from recmodels.ranking import RankerConfig
    from recmodels.sizing import sized_ranker_config

    sizes = {n: (c.num_leaves, c.min_data_in_leaf) for n in (0, 120, 299, 300, 700, 1900, 20_000, 10**6)
             for c in [sized_ranker_config(n)]}
    assert sizes == {0: (7, 20), 120: (7, 20), 299: (7, 20), 300: (15, 30), 700: (31, 50), 1900: (31, 50),
                     20_000: (63, 100), 10**6: (63, 100)}
    # Online Retail's ~1,900 training customers keep the library's default tree.
    default = RankerConfig()
    assert sizes[1900] == (default.num_leaves, default.min_data_in_leaf)
    assert sized_ranker_config(50, RankerConfig(n_models=2)).n_models == 2


def test_a_memo_of_shared_rankings_changes_no_candidate():
    from recmodels.ranking.candidates import RankingMemo, candidate_arrays

    rng = np.random.default_rng(8)
    popular = np.r_[-np.inf, rng.integers(0, 5, 30)].astype(np.float32)  # ties too

    def every_row_alike(histories):
        return np.tile(popular, (len(histories), 1))

    def own(histories):
        scores = np.tile(popular[::-1].copy(), (len(histories), 1))
        for row, history in enumerate(histories):
            scores[row, history] = 9.0
        scores[:, 0] = -np.inf
        return scores

    sources = {"alike": every_row_alike, "own": own}
    memo = RankingMemo()
    for size in (1, 1, 3, 1, 4):  # alone and batched, the memo filled by earlier calls
        histories = [rng.integers(1, 31, size=2) for _ in range(size)]
        for depth in (4, 12):
            pd.testing.assert_frame_equal(candidate_arrays(sources, histories, depth, memo=memo).frame(),
                                          generate_candidates(sources, histories, depth))
    assert set(memo._last) == {"alike", "own"}  # a lone row's ranking is shared too; only equal keys reuse it


def test_the_head_of_one_row_is_the_head_of_its_stable_sort():
    from recmodels.ranking.candidates import _head, _top

    rng = np.random.default_rng(9)
    for trial in range(300):
        n_items = int(rng.integers(1, 60))
        keys = rng.choice([-2.0, -1.0, -0.0, 0.0, 1.0, np.inf], size=n_items) if trial % 2 else -rng.random(n_items)
        for depth in {1, n_items, int(rng.integers(1, n_items + 1))}:
            expected = np.argsort(keys, kind="stable")[:depth] + 1  # ties to the lower id
            assert _head(keys, np.sort(keys), depth).tolist() == expected.tolist()
            assert _top(keys[None, :], depth)[0].tolist() == expected.tolist()
