"""Sequences of every behaviour (views, carts, favourites beside purchases) and the models that read them.

Hand-made logs of a few events; every expected value is worked out in the comments."""

import numpy as np
import pandas as pd
import pytest
import torch

from recmodels.baselines import (
    BuyAgain,
    ItemKNN,
    MostPopular,
    holds_behaviour,
    load_baselines,
    save_baselines,
    with_behaviour_weights,
)
from recmodels.metrics import topk_from_scores
from recmodels.sasrec import SASRec, SASRecConfig
from recmodels.sequences import (
    EVENT_TYPES,
    SequenceConfig,
    behaviour_codes,
    build_sequences,
    decode,
    encode,
    purchased_items,
    reindex_tokens,
    token_histories,
)
from recmodels.splits import leave_last_basket_out, temporal_split
from recmodels.training import purchase_windows

N = 4  # items 1..4; a view of item i is the token i + 5, a cart i + 10, a favourite i + 15


def _events(rows):
    """(user, item, day, event_type) rows -> an events frame; days count from 2024-01-01."""
    return pd.DataFrame({
        "user_id": [r[0] for r in rows],
        "item_id": [r[1] for r in rows],
        "occurred_at": pd.Timestamp("2024-01-01") + pd.to_timedelta([r[2] for r in rows], unit="D"),
        "event_type": [r[3] for r in rows],
        "source_row": np.arange(len(rows)),
    })


def test_tokens_encode_the_behaviour_and_decode_back():
    tokens = encode(np.array([1, 4, 2, 3]), np.array([0, 1, 2, 3]), N)
    assert tokens.tolist() == [1, 4 + 5, 2 + 10, 3 + 15]
    items, codes = decode(tokens, N)
    assert items.tolist() == [1, 4, 2, 3] and codes.tolist() == [0, 1, 2, 3]
    assert purchased_items(tokens, N).tolist() == [1]
    assert EVENT_TYPES[0] == "purchase"  # code 0: a purchases-only sequence is its own token sequence
    with pytest.raises(ValueError, match="'click' is not one of purchase, view, cart, favourite"):
        behaviour_codes(["view", "click"])


def test_sequences_keep_every_behaviour_in_time_order():
    events = _events([("u", "b", 1, "view"), ("u", "a", 0, "view"), ("u", "b", 2, "purchase"),
                      ("u", "c", 3, "cart"), ("v", "c", 0, "purchase")])
    sequences, keys, _, index = build_sequences(events, SequenceConfig())
    assert index.item_ids.tolist() == ["a", "b", "c"]  # an item only viewed is in the catalogue too
    n = index.n_items()  # 3: a view of item i is i + 4, a cart i + 8
    assert keys.tolist() == ["u", "v"]
    assert sequences[0].tolist() == [1 + 4, 2 + 4, 2, 3 + 8] and sequences[1].tolist() == [3]
    assert purchased_items(sequences[0], n).tolist() == [2]
    only_purchases, keys, _, index = build_sequences(events, SequenceConfig(inputs="purchases"))
    assert index.item_ids.tolist() == ["b", "c"] and [s.tolist() for s in only_purchases] == [[1], [2]]


def test_a_temporal_split_evaluates_purchases_only_and_keeps_views_in_the_history():
    events = _events([
        ("u", "a", 0, "purchase"), ("u", "b", 1, "view"), ("u", "c", 5, "view"), ("u", "b", 6, "purchase"),
        ("w", "a", 0, "view"), ("w", "b", 6, "purchase"),  # w bought nothing before the cut-off: not returning
        ("x", "a", 0, "purchase"), ("x", "c", 6, "view"),  # x only viewed after it: nothing to evaluate
    ])
    split = temporal_split(events, SequenceConfig(), test_cutoff="2024-01-07", validation_cutoff="2024-01-05")
    n = split.n_items  # 3 items
    assert split.test.keys.tolist() == ["u"]
    assert split.test.histories[0].tolist() == [1, 2 + n + 1, 3 + n + 1]  # a, view b, view c
    assert [t.tolist() for t in split.test.targets] == [[2]]  # the purchase of b, not the view of c
    # w's view trains, though it gives no evaluation row.
    assert any(s.tolist() == [1 + n + 1] for s in split.train)


def test_leave_last_basket_out_counts_baskets_of_purchases():
    events = _events([
        ("u", "a", 0, "purchase"), ("u", "b", 1, "view"), ("u", "b", 2, "view"), ("u", "b", 3, "purchase"),
        ("u", "c", 4, "view"), ("u", "c", 5, "purchase"),
    ])
    split = leave_last_basket_out(events, SequenceConfig())
    # Three purchase baskets (days 0, 3, 5), whatever the views between them: the day-5 one tests.
    assert list(split.test.cutoffs) == [np.datetime64("2024-01-06", "ns")]
    assert list(split.validation.cutoffs) == [np.datetime64("2024-01-04", "ns")]
    assert [t.tolist() for t in split.test.targets] == [[3]]
    assert decode(split.test.histories[0], split.n_items)[1].tolist() == [0, 1, 1, 0, 1]


def test_token_histories_merge_behaviours_chronologically():
    events = pd.DataFrame({"user_key": ["u", "u", "u", "v"], "item": [2, 1, 3, 1],
                           "occurred_at": pd.to_datetime(["2024-01-02", "2024-01-01", "2024-01-02", "2024-01-01"]),
                           "event_type": ["purchase", "view", "cart", "purchase"]})
    histories = token_histories(events, N)
    # u: the view of 1 (day 1), then on day 2 the purchase of 2 (token 2) before the cart of 3 (token 13).
    assert histories["u"].tolist() == [1 + 5, 2, 3 + 10] and histories["v"].tolist() == [1]


def test_reindex_tokens_keeps_behaviour_and_drops_unknown_items():
    to_other = np.array([0, 3, 0, 1, 2])  # item 2 is unknown there; the other index has 3 items
    tokens = encode(np.array([1, 2, 4]), np.array([1, 0, 2]), N)
    assert reindex_tokens(tokens, to_other, N, 3).tolist() == [3 + 4, 2 + 8]


# --- SASRec with an event-type embedding ---------------------------------------------------------------------

TINY = SASRecConfig(hidden_size=16, num_layers=1, num_heads=2, dropout=0.0, max_length=6, event_types=4)


def test_a_sequences_score_changes_when_an_events_type_changes():
    torch.manual_seed(0)
    model = SASRec(TINY, N).eval()
    viewed, bought = encode(np.array([1, 2]), np.array([1, 0]), N), np.array([1, 2])
    scores = model.score([viewed, bought])
    assert not np.allclose(scores[0, 1:], scores[1, 1:])
    # Without the embedding a model reads purchases only and refuses another behaviour's token.
    plain = SASRec(SASRecConfig(hidden_size=16, num_layers=1, num_heads=2, max_length=6), N)
    with pytest.raises(ValueError, match="behaviour code 1; this model reads 1 behaviour"):
        plain.score([viewed])


def test_views_are_inputs_never_targets():
    torch.manual_seed(0)
    model = SASRec(TINY, N)
    inputs = torch.tensor([[0, 1, 2 + 5]])  # a purchase of 1, then a view of 2
    only_views = torch.tensor([[0, 2 + 5, 3 + 5]])  # ... followed by views: nothing to predict
    assert model.training_loss(inputs, only_views).item() == 0.0
    with_purchase = torch.tensor([[0, 2 + 5, 3]])  # the purchase of 3 is the one target
    loss = model.training_loss(inputs, with_purchase)
    # The one scored position reads "bought 1, viewed 2"; its loss is the cross-entropy of item 3 there.
    scores = torch.from_numpy(model.score([np.array([1, 2 + 5])])[0, 1:])  # items 1..4
    assert loss.item() == pytest.approx(-torch.log_softmax(scores, dim=0)[3 - 1].item(), rel=1e-4)
    assert purchase_windows(np.array([[0, 7, 8], [0, 7, 3]]), N).tolist() == [False, True]


def test_learns_that_a_cart_leads_to_its_purchase():
    """Customers put one item in the cart, then buy it; views of the same items lead nowhere. A model with the
    event-type embedding must tell the two apart."""
    rng = np.random.default_rng(0)
    sequences = []
    for _ in range(300):
        carted, viewed = rng.choice(np.arange(1, N + 1), size=2, replace=False)
        sequences.append(np.array([int(encode(viewed, 1, N)), int(encode(carted, 2, N)), carted]))
    model = SASRec(TINY, N)
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    batch = torch.from_numpy(np.stack(sequences))
    for _ in range(150):
        loss = model.training_loss(batch[:, :-1], batch[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    history = [np.array([int(encode(4, 1, N)), int(encode(2, 2, N))])]  # viewed 4, carted 2
    assert topk_from_scores(model.score(history), 1)[0].tolist() == [2]


# --- baselines reading behaviour ------------------------------------------------------------------------------

def _tokens(*pairs):
    """(item, behaviour) pairs -> a token sequence."""
    return encode(np.array([p[0] for p in pairs]), np.array([EVENT_TYPES.index(p[1]) for p in pairs]), N)


def test_popularity_counts_views_at_their_weight():
    train = [_tokens((1, "purchase"), (2, "view"), (2, "view"), (2, "view")), _tokens((1, "purchase"))]
    # Purchases only: item 1 (2 purchases) first. Views at 0.5: item 2 has 1.5 against item 1's 2; at 1: 3 > 2.
    assert topk_from_scores(MostPopular().fit(train, N).score([np.array([])]), 2)[0].tolist() == [1, 2]
    assert topk_from_scores(MostPopular(behaviour_weight=1.0).fit(train, N).score([np.array([])]), 2)[0].tolist() \
        == [2, 1]


def test_item_knn_learns_co_views_at_their_weight():
    # Customers who view 1 also view 3; nobody buys 3 with 1.
    train = [_tokens((1, "purchase"), (3, "view")), _tokens((1, "view"), (3, "view")), _tokens((2, "purchase"))]
    history = [_tokens((1, "purchase"))]
    assert ItemKNN().fit(train, N).similarity_[1, 3] == 0.0
    knn = ItemKNN(behaviour_weight=0.5).fit(train, N)
    # Weighted cosine: sequence 1 holds 1 (1.0) and 3 (0.5), sequence 2 holds both at 0.5.
    # c(1, 3) = 1 * 0.5 + 0.5 * 0.5 = 0.75; n_1 = 1 + 0.25, n_3 = 0.25 + 0.25: 0.75 / sqrt(1.25 * 0.5).
    assert knn.similarity_[1, 3] == pytest.approx(0.75 / np.sqrt(1.25 * 0.5))
    assert topk_from_scores(knn.score(history), 1)[0].tolist() == [3]
    # Windowed co-occurrence weighs a pair by its events' weights as well.
    windowed = ItemKNN(behaviour_weight=0.5, window=1).fit(train, N)
    assert windowed.similarity_[1, 3] == pytest.approx(0.75 / np.sqrt(1.25 * 0.5))


def test_purchases_only_readings_ignore_behaviour_and_round_trip(tmp_path):
    train = [_tokens((1, "purchase"), (2, "view"), (1, "purchase")), _tokens((3, "purchase"))]
    plain = [np.array([1, 1]), np.array([3])]
    history = [_tokens((2, "view"), (3, "purchase"), (4, "cart"))]
    for model_class in (BuyAgain, ItemKNN, MostPopular):
        with_views, without = model_class().fit(train, N), model_class().fit(plain, N)
        np.testing.assert_array_equal(with_views.score(history), without.score([np.array([3])]))
    save_baselines({"knn": ItemKNN(behaviour_weight=0.1).fit(train, N)}, tmp_path)
    assert load_baselines(tmp_path)["knn"].behaviour_weight == 0.1


def test_behaviour_weights_are_tried_only_where_sequences_hold_behaviour():
    assert not holds_behaviour([np.array([1, 4])], N) and holds_behaviour([_tokens((1, "view"))], N)
    assert with_behaviour_weights(({},), [np.array([1])], N) == ({},)
    assert with_behaviour_weights(({"window": 3},), [_tokens((1, "view"))], N) == (
        {"window": 3, "behaviour_weight": 0.0}, {"window": 3, "behaviour_weight": 0.1},
        {"window": 3, "behaviour_weight": 0.5})
