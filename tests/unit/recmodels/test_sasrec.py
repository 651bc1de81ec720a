"""SASRec model: masks, padding, scoring contract, text variants, save/load. Tiny sizes, seconds in all."""

import numpy as np
import pytest
import torch

from recmodels.sasrec import SASRec, SASRecConfig, load, load_item_ids, save

N_ITEMS = 20
TINY = SASRecConfig(hidden_size=16, num_layers=2, num_heads=2, dropout=0.0, max_length=8, text_dim=8)


def _model(config=TINY, n_items=N_ITEMS, text=None, seed=0):
    torch.manual_seed(seed)
    return SASRec(config, n_items, text).eval()


def _text(n_items=N_ITEMS, dim=8, seed=0):
    text = np.random.default_rng(seed).normal(size=(n_items + 1, dim)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    text[0] = 0.0
    return text


def _successor_sequences(n_sequences=200, length=10, seed=0):
    """Item i is always followed by i % N_ITEMS + 1: a pattern a next-item model must learn exactly."""
    starts = np.random.default_rng(seed).integers(0, N_ITEMS, size=n_sequences)
    return [(start + np.arange(length)) % N_ITEMS + 1 for start in starts]


def _fit(model, sequences, steps, lr=3e-3, batch_size=32):
    """A bare loop: these tests are about the model, the trainer has its own tests."""
    length = model.config.max_length
    pairs = np.zeros((len(sequences), 2, length), dtype=np.int64)
    for row, sequence in enumerate(sequences):
        window = sequence[-(length + 1) :]
        pairs[row, 0, length - len(window) + 1 :] = window[:-1]
        pairs[row, 1, length - len(window) + 1 :] = window[1:]
    pairs = torch.from_numpy(pairs)
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        batch = pairs[torch.randint(len(pairs), (batch_size,), generator=generator)]
        loss = model.training_loss(batch[:, 0], batch[:, 1])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return model.eval(), losses


def test_shapes():
    model = _model()
    hidden = model(torch.tensor([[0, 0, 0, 1, 2, 3, 4, 5], [0] * 7 + [9]]))
    assert hidden.shape == (2, 8, 16)
    scores = model.score([np.array([1, 2, 3]), np.array([4])])
    assert scores.shape == (2, N_ITEMS + 1) and scores.dtype == np.float32
    assert model.recommend([np.array([1, 2, 3])], k=5).shape == (1, 5)
    loss = model.training_loss(torch.tensor([[0, 1, 2]]), torch.tensor([[0, 2, 3]]))
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_changing_a_later_item_leaves_earlier_positions_unchanged():
    model = _model()
    before = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8]])
    after = before.clone()
    after[0, 5] = 17
    out_before, out_after = model(before), model(after)
    torch.testing.assert_close(out_before[:, :5], out_after[:, :5], rtol=0, atol=0)
    assert not torch.allclose(out_before[:, 5:], out_after[:, 5:])


def test_left_padding_and_batch_companions_do_not_change_the_last_position():
    model = _model()
    short = model(torch.tensor([[3, 4, 5]]))[:, -1]
    padded = model(torch.tensor([[0, 0, 0, 0, 0, 3, 4, 5]]))[:, -1]
    torch.testing.assert_close(short, padded, rtol=0, atol=1e-5)
    alone = model.score([np.array([3, 4, 5])])
    with_others = model.score([np.array([9, 8, 7, 6, 5, 4, 3, 2, 1, 12]), np.array([3, 4, 5]), np.array([])])
    np.testing.assert_allclose(alone[0], with_others[1], atol=1e-5)


def test_score_each_is_the_same_to_the_bit_in_any_company():
    model = _model(SASRecConfig(**{**TINY.__dict__, "item_to_item": True}))
    histories = [np.array([3, 4, 5]), np.array([9, 8, 7, 6, 5, 4, 3, 2, 1, 12]), np.array([], np.int64)]
    alone = np.concatenate([model.score_each([h]) for h in histories])
    np.testing.assert_array_equal(model.score_each(histories), alone)
    np.testing.assert_array_equal(model.score_each(histories[::-1])[::-1], alone)
    np.testing.assert_allclose(model.score(histories), alone, atol=1e-5)
    assert model.score_each([]).shape == (0, N_ITEMS + 1)


def test_scores_follow_weight_changes_despite_the_cached_item_vectors():
    model = _model(SASRecConfig(**{**TINY.__dict__, "item_text": "id+text", "item_to_item": True}), text=_text())
    history = [np.array([1, 2, 3])]
    before = model.score(history)
    np.testing.assert_array_equal(model.score(history), before)  # the cache answers alike
    model, _ = _fit(model, _successor_sequences(), steps=3)  # optimiser steps change the weights in place
    after = model.score(history)
    assert not np.allclose(after, before)
    fresh = _model(SASRecConfig(**{**TINY.__dict__, "item_text": "id+text", "item_to_item": True}), text=_text())
    fresh.load_state_dict(model.state_dict())
    np.testing.assert_allclose(fresh.score(history), after, atol=1e-6)


def test_pad_scores_minus_infinity_and_is_never_recommended():
    model = _model()
    histories = [np.array([1, 2, 3]), np.array([], dtype=np.int64)]
    scores = model.score(histories)
    assert np.all(scores[:, 0] == -np.inf) and np.all(np.isfinite(scores[:, 1:]))
    everything = model.recommend(histories, k=N_ITEMS + 5)
    assert everything.shape == (2, N_ITEMS)
    assert all(sorted(row) == list(range(1, N_ITEMS + 1)) for row in everything.tolist())
    # Even when exclusion leaves fewer real candidates than k, PAD does not fill the gap.
    assert 0 not in model.recommend(histories, k=N_ITEMS, exclude_history=True)


def test_recommend_is_ordered_by_score_and_excludes_history():
    model = _model()
    history = np.array([5, 6, 7, 8])
    scores = model.score([history])[0]
    top = model.recommend([history], k=4)[0]
    assert list(top) == list(np.argsort(-scores[1:], kind="stable")[:4] + 1)
    excluded = model.recommend([history], k=N_ITEMS - len(history), exclude_history=True)[0]
    assert set(excluded) == set(range(1, N_ITEMS + 1)) - set(history.tolist())


def test_long_histories_use_the_most_recent_items():
    model = _model()
    long_history = np.arange(1, 16)
    np.testing.assert_array_equal(model.score([long_history]), model.score([long_history[-8:]]))


def test_chunked_scoring_matches_one_pass():
    whole = _model()
    chunked = _model(SASRecConfig(**{**TINY.__dict__, "score_chunk_items": 3}))
    histories = [np.array([1, 2, 3]), np.array([7])]
    np.testing.assert_allclose(whole.score(histories), chunked.score(histories), atol=1e-6)


def test_learns_a_deterministic_successor_pattern():
    model, losses = _fit(_model(), _successor_sequences(), steps=250)
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:20])
    histories = [(start + np.arange(4)) % N_ITEMS + 1 for start in range(N_ITEMS)]
    expected = np.array([history[-1] % N_ITEMS + 1 for history in histories])
    accuracy = np.mean(model.recommend(histories, k=1)[:, 0] == expected)
    assert accuracy > 0.9


@pytest.mark.parametrize("sampler", ["uniform", "popularity"])
def test_sampled_softmax_runs_and_learns(sampler):
    changes = {"loss": "sampled_softmax", "n_negatives": 8, "negative_sampler": sampler}
    config = SASRecConfig(**{**TINY.__dict__, **changes})
    model = _model(config)
    sequences = _successor_sequences()
    if sampler == "popularity":
        model.set_item_counts(np.bincount(np.concatenate(sequences), minlength=N_ITEMS + 1))
    model, losses = _fit(model, sequences, steps=150)
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:20])


def test_popularity_sampler_requires_counts():
    config = SASRecConfig(**{**TINY.__dict__, "loss": "sampled_softmax", "negative_sampler": "popularity"})
    with pytest.raises(RuntimeError, match="set_item_counts"):
        _model(config).train().training_loss(torch.tensor([[0, 1, 2]]), torch.tensor([[0, 2, 3]]))


def _clustered_text(held_out):
    """Items 1..10 share a text direction, 11..20 another; the held-out item's text is its cluster centre."""
    rng = np.random.default_rng(1)
    text = 0.3 * rng.normal(size=(N_ITEMS + 1, 8)).astype(np.float32)
    text[1:11, 0] += 1.0
    text[11:, 1] += 1.0
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    assert 1 <= held_out <= 10
    text[held_out] = np.mean([text[i] for i in range(1, 11) if i != held_out], axis=0)
    text[held_out] /= np.linalg.norm(text[held_out])
    text[0] = 0.0
    return text


def _cluster_walks(held_out, n_sequences=200, length=8):
    rng = np.random.default_rng(2)
    first = np.array([i for i in range(1, 11) if i != held_out])
    second = np.arange(11, N_ITEMS + 1)
    return [rng.choice(first if row % 2 else second, size=length) for row in range(n_sequences)]


def test_text_only_model_ranks_an_unseen_item_with_its_text_cluster():
    held_out = 10
    text = _clustered_text(held_out)
    sequences = _cluster_walks(held_out)
    assert not any(held_out in sequence for sequence in sequences)
    first_cluster = [sequence[:4] for sequence in sequences[1:40:2]]
    second_cluster = [sequence[:4] for sequence in sequences[0:40:2]]

    def mean_rank(model, histories):
        scores = model.score(histories)[:, 1:]
        return np.mean((scores > scores[:, [held_out - 1]]).sum(axis=1) + 1)

    text_config = SASRecConfig(**{**TINY.__dict__, "item_text": "text"})
    text_model, _ = _fit(_model(text_config, text=text), sequences, 200)
    id_model, _ = _fit(_model(), sequences, 200)
    # Random is rank ~10.5 of 20. The text model places the unseen item with its cluster: near the top after
    # first-cluster histories, near the bottom after second-cluster ones. The ID model only ever saw it as a
    # negative, so it sits below every trained first-cluster item.
    assert mean_rank(text_model, first_cluster) <= 5
    assert mean_rank(text_model, second_cluster) >= 15
    assert mean_rank(id_model, first_cluster) >= 9


@pytest.mark.parametrize("item_text", ["id", "text", "id+text"])
def test_save_load_round_trip_gives_identical_scores(tmp_path, item_text):
    text = _text() if item_text != "id" else None
    model = _model(SASRecConfig(**{**TINY.__dict__, "item_text": item_text}), text=text)
    histories = [np.array([1, 2, 3]), np.array([4, 5])]
    save(model, tmp_path, item_ids=[f"sku-{i}" for i in range(N_ITEMS)])
    # The folder is the whole model: weights, config, its item ids and, for text variants, the frozen text matrix.
    expected = ["config.json", "item_ids.json", "model.pt", *(["item_text.npy"] if text is not None else [])]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(expected)
    assert load_item_ids(tmp_path).tolist() == [f"sku-{i}" for i in range(N_ITEMS)]
    for restored in (load(tmp_path, item_text_embeddings=text), load(tmp_path)):
        assert restored.config == model.config and restored.n_items == N_ITEMS
        np.testing.assert_array_equal(model.score(histories), restored.score(histories))


def test_load_refuses_a_text_model_without_its_text(tmp_path):
    text = _text()
    save(_model(SASRecConfig(**{**TINY.__dict__, "item_text": "id+text"}), text=text), tmp_path)
    (tmp_path / "item_text.npy").unlink()  # a folder copied without its text matrix
    with pytest.raises(ValueError, match="item_text_embeddings"):
        load(tmp_path)


def test_config_rejects_unknown_switches():
    with pytest.raises(ValueError):
        SASRecConfig(item_text="bert")
    with pytest.raises(ValueError):
        SASRecConfig(loss="bpr")
    with pytest.raises(ValueError, match="item_text_embeddings"):
        SASRec(SASRecConfig(item_text="text", text_dim=8), N_ITEMS)


def test_set_aware_targets_average_over_the_rest_of_the_group():
    model = _model()
    inputs = torch.tensor([[0, 0, 0, 0, 0, 1, 2, 3]])
    targets = torch.tensor([[0, 0, 0, 0, 1, 2, 3, 4]])
    # Items 2 and 3 share a timestamp (group 2): the position before them may predict either.
    groups = torch.tensor([[0, 0, 0, 0, 1, 2, 2, 3]])
    log_p = torch.log_softmax((model(inputs) @ model.item_representations().T)[0, :, 1:], dim=-1)  # (L, N)
    # Positions 4..7 (inputs PAD, 1, 2, 3). Position 4 sees only padding but still predicts item 1.
    by_hand = -(log_p[4, 0] + (log_p[5, 1] + log_p[5, 2]) / 2 + log_p[6, 2] + log_p[7, 3]) / 4
    loss = model.training_loss(inputs, targets, groups)
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-5)
    # With every target in its own group the set-aware loss is the plain next-item cross-entropy.
    distinct = torch.tensor([[0, 0, 0, 0, 1, 2, 3, 4]])
    assert model.training_loss(inputs, targets, distinct).item() == pytest.approx(
        model.training_loss(inputs, targets).item(), rel=1e-5
    )


def test_set_aware_targets_need_the_full_softmax():
    model = _model(SASRecConfig(**{**TINY.__dict__, "loss": "sampled_softmax"}))
    with pytest.raises(ValueError, match="full_ce"):
        model.training_loss(torch.tensor([[0, 1, 2]]), torch.tensor([[0, 2, 3]]), torch.tensor([[0, 1, 1]]))


PAIRS = SASRecConfig(**{**TINY.__dict__, "item_to_item": True})


def _with_random_pairs(seed=1):
    model = _model(PAIRS)
    with torch.no_grad():
        model.item_to_item.weight.copy_(torch.randn(N_ITEMS + 1, N_ITEMS + 1, generator=torch.Generator().manual_seed(seed)))
        model.item_to_item.weight[0].zero_()
    return model


def test_item_to_item_scores_add_the_history_rows():
    model = _with_random_pairs()
    history = np.array([3, 7, 3])  # item 3 twice: its row counts twice
    with torch.no_grad():
        last = model(torch.from_numpy(history[None]))[0, -1]
        transformer = (last @ model.item_representations().T).numpy()
    pairs = model.item_to_item.weight.detach().numpy()
    expected = transformer + 2 * pairs[3] + pairs[7]
    scores = model.score([history])[0]
    np.testing.assert_allclose(scores[1:], expected[1:], rtol=1e-5, atol=1e-5)


def test_item_to_item_training_scores_use_only_earlier_inputs():
    model = _with_random_pairs()
    pairs = model.item_to_item.weight.detach()
    inputs = torch.tensor([[0, 0, 0, 0, 0, 1, 2, 3]])
    targets = torch.tensor([[0, 0, 0, 0, 1, 2, 3, 4]])
    with torch.no_grad():
        transformer = model(inputs)[0] @ model.item_representations().T  # (L, N+1)
    # Position 5 has seen item 1, position 6 items 1 and 2, position 7 items 1, 2 and 3; position 4 nothing.
    seen = {4: [], 5: [1], 6: [1, 2], 7: [1, 2, 3]}
    by_hand = 0.0
    for position, history in seen.items():
        logits = transformer[position] + sum((pairs[i] for i in history), torch.zeros(N_ITEMS + 1))
        by_hand -= torch.log_softmax(logits[1:], dim=-1)[targets[0, position] - 1].item()
    assert model.training_loss(inputs, targets).item() == pytest.approx(by_hand / 4, rel=1e-5)


def test_item_to_item_round_trips_and_is_refused_for_huge_catalogues(tmp_path, monkeypatch):
    model = _with_random_pairs()
    save(model, tmp_path)
    history = [np.array([1, 5, 9])]
    np.testing.assert_array_equal(load(tmp_path).score(history), model.score(history))
    monkeypatch.setattr("recmodels.sasrec.ITEM_TO_ITEM_MAX_ITEMS", 10)
    with pytest.raises(ValueError, match="item_to_item .* 20 items exceed the limit of 10"):
        _model(PAIRS)


BIAS = SASRecConfig(hidden_size=16, num_layers=1, num_heads=2, dropout=0.0, max_length=8, history_bias=True)


def _with_history_bias(shared=-1.5):
    model = _model(BIAS)
    with torch.no_grad():
        model.history_bias_shared.fill_(shared)
        model.history_bias.copy_(torch.arange(N_ITEMS + 1, dtype=torch.float32) / 10)  # item i: shared + i/10
    return model


def test_history_bias_offsets_only_the_items_in_the_history_once_each():
    model = _with_history_bias()
    history = np.array([3, 7, 3])  # item 3 twice: still one offset
    with torch.no_grad():
        last = model(torch.from_numpy(history[None]))[0, -1]
        expected = (last @ model.item_representations().T).numpy()
    expected[3] += -1.5 + 0.3
    expected[7] += -1.5 + 0.7
    np.testing.assert_allclose(model.score([history])[0][1:], expected[1:], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("loss", ["full_ce", "sampled_softmax"])
def test_history_bias_in_training_sees_only_earlier_inputs(loss):
    model = _with_history_bias()
    model.config = SASRecConfig(**{**model.config.__dict__, "loss": loss, "n_negatives": N_ITEMS})
    # Position 6 has seen items 2 and 4, and its target 2 is a repeat; position 7 has seen item 2 twice, which
    # must count once (in the loss and in its gradient).
    inputs = torch.tensor([[0, 0, 0, 0, 0, 2, 4, 2]])
    targets = torch.tensor([[0, 0, 0, 0, 0, 4, 2, 5]])
    seen = {5: [2], 6: [2, 4], 7: [2, 4]}
    if loss == "full_ce":
        transformer = (model(inputs)[0] @ model.item_representations().T).detach()  # (L, N+1)
        by_hand = 0.0
        for position, history in seen.items():
            offset = torch.zeros(N_ITEMS + 1)
            for item in history:
                offset = offset + torch.nn.functional.one_hot(torch.tensor(item), N_ITEMS + 1) * (
                    model.history_bias_shared + model.history_bias[item])
            logits = transformer[position] + offset
            by_hand = by_hand - torch.log_softmax(logits[1:], dim=-1)[targets[0, position] - 1]
        by_hand = by_hand / 3
        by_hand.backward()
        expected_gradient = model.history_bias.grad.clone()
        model.zero_grad()
        actual = model.training_loss(inputs, targets)
        actual.backward()
        assert actual.item() == pytest.approx(by_hand.item(), rel=1e-5)
        torch.testing.assert_close(model.history_bias.grad, expected_gradient, rtol=1e-4, atol=1e-6)
    else:
        # Item 4 is seen only at the last position, where it is the target: raising its offset can only raise that
        # positive logit (a negative equal to the target is masked), so the loss must fall.
        inputs = torch.tensor([[0, 0, 0, 0, 0, 0, 3, 4]])
        targets = torch.tensor([[0, 0, 0, 0, 0, 0, 4, 4]])
        torch.manual_seed(0)
        before = model.training_loss(inputs, targets).item()
        with torch.no_grad():
            model.history_bias[4] += 5.0
        torch.manual_seed(0)
        assert model.training_loss(inputs, targets).item() < before - 0.5


def test_history_bias_learns_that_a_session_never_repeats_and_round_trips(tmp_path):
    sequences = [np.random.default_rng(seed).permutation(N_ITEMS)[:8] + 1 for seed in range(200)]
    model, _ = _fit(_model(BIAS), sequences, steps=150, lr=1e-2)
    # No item ever follows itself or an earlier copy, so the shared offset must turn into a penalty.
    assert model.history_bias_shared.item() < -0.5
    save(model, tmp_path)
    history = [np.array([1, 5, 9])]
    np.testing.assert_array_equal(load(tmp_path).score(history), model.score(history))


@pytest.mark.parametrize("item_to_item", [False, True])
def test_history_bias_trains_under_bf16_autocast(item_to_item):
    """CUDA trains under bf16 autocast; CPU autocast runs the same dtype rules, so the offset's scatter is checked here."""
    model = _model(SASRecConfig(**{**BIAS.__dict__, "item_to_item": item_to_item}))
    with torch.no_grad():
        model.history_bias.copy_(torch.arange(N_ITEMS + 1, dtype=torch.float32) / 10)
    inputs = torch.tensor([[0, 0, 0, 0, 0, 2, 4, 2]])
    targets = torch.tensor([[0, 0, 0, 0, 0, 4, 2, 5]])
    expected = model.training_loss(inputs, targets).item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model.training_loss(inputs, targets)
    loss.backward()
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(expected, rel=2e-2)  # bf16 matmuls: about 3 significant digits
    assert model.history_bias.grad[[2, 4]].abs().sum() > 0  # the seen items' offsets learn


def test_loading_draws_no_random_embeddings_and_restores_every_tensor(tmp_path, monkeypatch):
    model = _with_random_pairs()
    save(model, tmp_path)

    def drawn(*args, **kwargs):
        raise AssertionError("a weight the checkpoint overwrites was drawn at random")

    monkeypatch.setattr(torch.nn.init, "normal_", drawn)
    monkeypatch.setattr(torch.nn.init, "trunc_normal_", drawn)
    restored = load(tmp_path)
    saved, loaded = model.state_dict(), restored.state_dict()
    assert set(saved) == set(loaded)
    for name, tensor in saved.items():
        assert torch.equal(loaded[name], tensor), name
