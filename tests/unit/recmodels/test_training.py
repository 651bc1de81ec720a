"""SASRec trainer: examples, learning, early stopping, determinism, crash-safe resume. Tiny runs only."""

import numpy as np
import pytest
import torch

from recmodels.sasrec import SASRecConfig
from recmodels.training import (
    TrainConfig,
    epoch_batches,
    fit_then_refit,
    make_training_examples,
    shuffle_ties,
    timestamp_groups,
    train_sasrec,
)

N_ITEMS = 20
MODEL = SASRecConfig(hidden_size=16, num_layers=1, num_heads=2, dropout=0.1, max_length=8)
FAST = TrainConfig(epochs=4, batch_size=32, lr=3e-3, warmup_steps=5, show_progress=False, num_threads=1)


def _successor_sequences(n_sequences=120, length=10, seed=0):
    starts = np.random.default_rng(seed).integers(0, N_ITEMS, size=n_sequences)
    return [(start + np.arange(length)) % N_ITEMS + 1 for start in starts]


def _next_item_accuracy(model):
    histories = [(start + np.arange(3)) % N_ITEMS + 1 for start in range(N_ITEMS)]
    expected = np.array([history[-1] % N_ITEMS + 1 for history in histories])
    return float(np.mean(model.recommend(histories, k=1)[:, 0] == expected))


def _states_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


def test_examples_by_hand():
    sequences = [np.array([1, 2, 3]), np.array([7]), np.array([4, 5])]
    inputs, targets = make_training_examples(sequences, max_length=4)
    assert inputs.tolist() == [[0, 0, 1, 2], [0, 0, 0, 4]]
    assert targets.tolist() == [[0, 0, 2, 3], [0, 0, 0, 5]]


def test_long_sequences_keep_the_newest_window_and_slide_back_without_repeating_targets():
    sequence = np.arange(1, 11)  # 10 items
    inputs, targets = make_training_examples([sequence], max_length=4)
    assert inputs.tolist() == [[6, 7, 8, 9]] and targets.tolist() == [[7, 8, 9, 10]]
    inputs, targets = make_training_examples([sequence], max_length=4, windows_per_sequence=5)
    assert inputs.tolist() == [[6, 7, 8, 9], [2, 3, 4, 5], [0, 0, 0, 1]]
    assert targets.tolist() == [[7, 8, 9, 10], [3, 4, 5, 6], [0, 0, 0, 2]]
    assert sorted(t for t in targets.ravel().tolist() if t) == list(range(2, 11))


def test_shuffle_ties_permutes_only_items_that_share_a_timestamp():
    sequences = [np.array([1, 2, 3, 4, 5]), np.array([6]), np.array([], dtype=np.int64), np.array([7, 8])]
    times = [np.array([0, 0, 0, 1, 2]), np.array([3]), np.array([], dtype=np.int64), np.array([4, 4])]
    seen = set()
    for seed in range(200):  # 12 equally likely orders: all appear within 200 seeded draws
        shuffled = shuffle_ties(sequences, times, np.random.default_rng(seed))
        assert shuffled[0][3:].tolist() == [4, 5]  # untied items keep their place
        assert sorted(shuffled[0][:3].tolist()) == [1, 2, 3]
        assert shuffled[1].tolist() == [6] and shuffled[2].tolist() == []
        assert sorted(shuffled[3].tolist()) == [7, 8]
        seen.add((tuple(shuffled[0][:3]), tuple(shuffled[3])))
    assert len(seen) == 12  # all 3! x 2! orders of the tied groups occur
    again = shuffle_ties(sequences, times, np.random.default_rng(5))
    assert all(np.array_equal(a, b) for a, b in zip(again, shuffle_ties(sequences, times, np.random.default_rng(5))))


def test_tie_shuffled_training_is_seeded_and_resumes_identically(tmp_path):
    sequences = _successor_sequences(n_sequences=40)
    times = [np.repeat(np.arange(5), 2) for _ in sequences]  # pairs of tied items
    first, _ = train_sasrec(sequences, N_ITEMS, MODEL, FAST, train_timestamps=times)
    second, _ = train_sasrec(sequences, N_ITEMS, MODEL, FAST, train_timestamps=times)
    plain, _ = train_sasrec(sequences, N_ITEMS, MODEL, FAST)
    assert _states_equal(first.state_dict(), second.state_dict())
    assert not _states_equal(first.state_dict(), plain.state_dict())
    no_shuffle = TrainConfig(**{**FAST.__dict__, "shuffle_ties": False})
    assert _states_equal(train_sasrec(sequences, N_ITEMS, MODEL, no_shuffle, train_timestamps=times)[0].state_dict(),
                         plain.state_dict())
    half = TrainConfig(**{**FAST.__dict__, "epochs": 2})
    train_sasrec(sequences, N_ITEMS, MODEL, half, checkpoint_dir=tmp_path, train_timestamps=times)
    resumed, _ = train_sasrec(sequences, N_ITEMS, MODEL, FAST, checkpoint_dir=tmp_path, train_timestamps=times)
    assert _states_equal(resumed.state_dict(), first.state_dict())


@pytest.mark.parametrize("bucket", [True, False])
def test_epoch_batches_cover_every_window_once(bucket):
    lengths = torch.from_numpy(np.random.default_rng(0).integers(1, 51, size=1000))
    batches = epoch_batches(lengths, 64, torch.Generator().manual_seed(1), bucket)
    assert len(batches) == 16  # ceil(1000 / 64): one partial batch at most
    assert sorted(torch.cat(batches).tolist()) == list(range(1000))
    again = epoch_batches(lengths, 64, torch.Generator().manual_seed(1), bucket)
    assert all(torch.equal(a, b) for a, b in zip(batches, again))


def test_length_buckets_cut_padding():
    lengths = torch.from_numpy(np.random.default_rng(0).integers(1, 51, size=4096))

    def padding(batches):
        return sum(int(lengths[b].max()) * len(b) - int(lengths[b].sum()) for b in batches)

    plain = padding(epoch_batches(lengths, 32, torch.Generator().manual_seed(1), False))
    bucketed = padding(epoch_batches(lengths, 32, torch.Generator().manual_seed(1), True))
    assert bucketed < 0.1 * plain


def test_nothing_to_learn_is_an_error():
    with pytest.raises(ValueError, match="2 or more"):
        make_training_examples([np.array([3]), np.array([], dtype=np.int64)], max_length=4)


def test_loss_decreases_and_the_pattern_is_learned():
    config = TrainConfig(**{**FAST.__dict__, "epochs": 25})
    model, history = train_sasrec(_successor_sequences(), N_ITEMS, MODEL, config)
    losses = [record["loss"] for record in history.epochs]
    assert len(losses) == 25 and losses[-1] < 0.3 * losses[0]
    assert history.best_epoch == 25 and history.best_metric is None
    assert not model.training
    assert _next_item_accuracy(model) > 0.9


def test_early_stopping_restores_the_best_weights():
    scripted = iter([0.1, 0.5, 0.4, 0.3, 0.2, 0.9])
    seen = {}

    def validate(model):
        metric = next(scripted)
        seen[len(seen) + 1] = {k: v.clone() for k, v in model.state_dict().items()}
        return metric

    config = TrainConfig(**{**FAST.__dict__, "epochs": 6, "patience": 3})
    model, history = train_sasrec(_successor_sequences(), N_ITEMS, MODEL, config, validate=validate)
    assert [record["val_ndcg@10"] for record in history.epochs] == [0.1, 0.5, 0.4, 0.3, 0.2]
    assert history.stopped_early and history.best_epoch == 2 and history.best_metric == 0.5
    assert history.time_to_best_s == pytest.approx(sum(r["seconds"] for r in history.epochs[:2]))
    assert _states_equal(model.state_dict(), seen[2])


def test_same_seed_same_weights_other_seed_other_weights():
    sequences = _successor_sequences()
    first, _ = train_sasrec(sequences, N_ITEMS, MODEL, TrainConfig(**{**FAST.__dict__, "epochs": 2}))
    again, _ = train_sasrec(sequences, N_ITEMS, MODEL, TrainConfig(**{**FAST.__dict__, "epochs": 2}))
    reseeded = TrainConfig(**{**FAST.__dict__, "epochs": 2, "seed": 7})
    other, _ = train_sasrec(sequences, N_ITEMS, MODEL, reseeded)
    assert _states_equal(first.state_dict(), again.state_dict())
    assert not _states_equal(first.state_dict(), other.state_dict())


@pytest.mark.parametrize("loss", ["full_ce", "sampled_softmax"])
def test_resume_after_a_crash_matches_an_uninterrupted_run(tmp_path, loss):
    # Sampled softmax draws negatives from the global RNG, so it checks that RNG state is restored too.
    model_config = SASRecConfig(**{**MODEL.__dict__, "loss": loss, "n_negatives": 8})
    sequences = _successor_sequences()

    def validate(model):
        return _next_item_accuracy(model)

    uninterrupted, full_history = train_sasrec(
        sequences, N_ITEMS, model_config, FAST, validate=validate, checkpoint_dir=tmp_path / "a"
    )
    # The "crash": a run that only got through 2 of the 4 epochs, then the same call with the full budget.
    crashed = TrainConfig(**{**FAST.__dict__, "epochs": 2})
    train_sasrec(sequences, N_ITEMS, model_config, crashed, validate, None, tmp_path / "b")
    resumed, resumed_history = train_sasrec(
        sequences, N_ITEMS, model_config, FAST, validate=validate, checkpoint_dir=tmp_path / "b"
    )
    assert _states_equal(uninterrupted.state_dict(), resumed.state_dict())
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in full_history.epochs]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in resumed_history.epochs]
    assert resumed_history.best_epoch == full_history.best_epoch
    # A finished run called again does no more work and returns the same model.
    finished, _ = train_sasrec(sequences, N_ITEMS, model_config, FAST, validate, None, tmp_path / "b")
    assert _states_equal(finished.state_dict(), resumed.state_dict())


def test_checkpoint_of_another_run_is_refused(tmp_path):
    sequences = _successor_sequences()
    one_epoch = TrainConfig(**{**FAST.__dict__, "epochs": 1})
    other_lr = TrainConfig(**{**FAST.__dict__, "lr": 1e-2})
    train_sasrec(sequences, N_ITEMS, MODEL, one_epoch, None, None, tmp_path)
    with pytest.raises(ValueError, match="another run"):
        train_sasrec(sequences, N_ITEMS, MODEL, other_lr, None, None, tmp_path)


def test_text_aware_and_popularity_sampled_training_run():
    text = np.random.default_rng(0).normal(size=(N_ITEMS + 1, 8)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    text[0] = 0.0
    model_config = SASRecConfig(
        **{
            **MODEL.__dict__,
            "item_text": "id+text",
            "text_dim": 8,
            "loss": "sampled_softmax",
            "n_negatives": 8,
            "negative_sampler": "popularity",
        }
    )
    config = TrainConfig(**{**FAST.__dict__, "epochs": 3, "schedule": "cosine"})
    sequences = _successor_sequences()
    model, history = train_sasrec(sequences, N_ITEMS, model_config, config, item_text_embeddings=text)
    assert history.epochs[-1]["loss"] < history.epochs[0]["loss"]
    assert model.score([np.array([1, 2])]).shape == (1, N_ITEMS + 1)


def test_timestamp_groups_number_distinct_times_from_one():
    times = [np.array(["2011-01-01T10:00", "2011-01-01T10:00", "2011-01-02T09:00", "2011-01-05T00:00"],
                      dtype="datetime64[m]"), np.array([], dtype="datetime64[m]")]
    groups = timestamp_groups(times)
    assert groups[0].tolist() == [1, 1, 2, 3] and groups[1].tolist() == []


def test_set_targets_change_training_and_stay_seeded():
    sequences = _successor_sequences(n_sequences=40)
    times = [np.repeat(np.arange(5), 2) for _ in sequences]
    with_sets = TrainConfig(**{**FAST.__dict__, "set_targets": True})
    first, _ = train_sasrec(sequences, N_ITEMS, MODEL, with_sets, train_timestamps=times)
    second, _ = train_sasrec(sequences, N_ITEMS, MODEL, with_sets, train_timestamps=times)
    plain, _ = train_sasrec(sequences, N_ITEMS, MODEL, FAST, train_timestamps=times)
    assert _states_equal(first.state_dict(), second.state_dict())
    assert not _states_equal(first.state_dict(), plain.state_dict())


def test_fit_then_refit_is_early_stopping_then_a_fixed_epoch_refit(tmp_path):
    sequences, longer = _successor_sequences(n_sequences=40), _successor_sequences(n_sequences=40, length=12)
    config = TrainConfig(**{**FAST.__dict__, "epochs": 5, "patience": 2})
    scripted = [0.2, 0.5, 0.4, 0.3, 0.1]

    def validate_from(metrics):
        remaining = iter(metrics)
        return lambda model: next(remaining)

    fit = fit_then_refit(sequences, longer, N_ITEMS, MODEL, config, validate_from(scripted), checkpoint_dir=tmp_path)
    selected, selection = train_sasrec(sequences, N_ITEMS, MODEL, config, validate=validate_from(scripted))
    refit, refit_history = train_sasrec(longer, N_ITEMS, MODEL, TrainConfig(**{**config.__dict__, "epochs": 2}))
    assert fit.selection.best_epoch == selection.best_epoch == 2 and len(fit.refit.epochs) == 2
    assert _states_equal(fit.selected.state_dict(), selected.state_dict())
    assert _states_equal(fit.model.state_dict(), refit.state_dict())
    assert [r["loss"] for r in fit.refit.epochs] == [r["loss"] for r in refit_history.epochs]
    assert {p.name for p in tmp_path.iterdir()} == {"validation", "test"}

    alone = fit_then_refit(sequences, None, N_ITEMS, MODEL, config, validate_from(scripted))
    assert alone.model is alone.selected and alone.refit is None
    assert _states_equal(alone.model.state_dict(), selected.state_dict())
