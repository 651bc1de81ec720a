"""The text encoder: pooling by hand, unit norms, determinism, batching without padding, clear load errors.

Most tests use a tiny randomly initialised BERT saved to a temporary folder (milliseconds per encode); one
test loads the packaged all-MiniLM-L6-v2 and checks it against sentence-transformers on a handful of texts.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from recmodels.text_encoder import (
    EncoderConfig,
    TextEncoder,
    _length_batches,
    _torch_threads,
    _wanted_threads,
    cls_pool,
    l2_normalize,
    load_encoder,
    mean_pool,
)

WORDS = ("red blue white green ceramic glass paper metal mug vase candle holder heart bag cup set of three "
         "small large vintage hanging light garden kitchen box tin").split()
TEXTS = [
    "red ceramic mug",
    "blue glass vase",
    "white hanging heart light holder",
    "set of three small paper bags",
    "vintage metal garden tin",
    "large green candle",
    "red ceramic mug",  # a duplicate
    "",
    "kitchen box",
]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> str:
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer(vocab=str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir) -> TextEncoder:
    return load_encoder(EncoderConfig(model=tiny_model_dir, device="cpu"))


# --- pooling and normalisation on hand-made tensors ------------------------------------------------------


def test_mean_pool_averages_real_tokens_and_ignores_padding():
    hidden = torch.tensor([
        [[1.0, 2.0], [3.0, 4.0], [1000.0, -1000.0]],  # third position is padding
        [[5.0, 6.0], [1e6, 1e6], [-1e6, 7.0]],  # only the first position is real
    ])  # (B=2, L=3, D=2)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    torch.testing.assert_close(mean_pool(hidden, mask), torch.tensor([[2.0, 3.0], [5.0, 6.0]]))


def test_mean_pool_of_an_all_padding_row_is_zero_not_nan():
    pooled = mean_pool(torch.ones(1, 3, 4), torch.zeros(1, 3, dtype=torch.long))
    assert torch.equal(pooled, torch.zeros(1, 4))


def test_cls_pool_picks_position_zero():
    hidden = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2)
    torch.testing.assert_close(cls_pool(hidden), torch.tensor([[0.0, 1.0], [6.0, 7.0]]))


def test_l2_normalize_gives_unit_norms():
    vectors = torch.tensor([[3.0, 4.0], [0.0, 2.0], [1e-3, 0.0]])
    torch.testing.assert_close(l2_normalize(vectors), torch.tensor([[0.6, 0.8], [0.0, 1.0], [1.0, 0.0]]))


@pytest.mark.parametrize("field, value", [("pooling", "max"), ("precision", "fp8"), ("max_length", 1),
                                          ("batch_size", 0), ("num_threads", -1)])
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        EncoderConfig(**{field: value})


# --- encoding ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_encode_gives_unit_float32_rows_per_text(tiny_model_dir, pooling):
    encoder = load_encoder(EncoderConfig(model=tiny_model_dir, pooling=pooling, device="cpu"))
    vectors = encoder.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert np.array_equal(vectors[0], vectors[6])  # equal texts, equal rows
    assert encoder.encode([]).shape == (0, 32)


def test_encode_matches_a_padded_masked_forward_pass(tiny, tiny_model_dir):
    """The no-padding, length-bucketed pipeline computes the textbook definition: mean over the mask."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModel.from_pretrained(tiny_model_dir)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    expected = l2_normalize(mean_pool(hidden, batch["attention_mask"])).numpy()
    np.testing.assert_allclose(tiny.encode(TEXTS), expected, atol=1e-5)


def test_same_input_twice_is_bit_identical_whatever_the_order(tiny):
    first = tiny.encode(TEXTS)
    assert np.array_equal(first, tiny.encode(TEXTS))
    permutation = np.random.default_rng(0).permutation(len(TEXTS))
    assert np.array_equal(first[permutation], tiny.encode([TEXTS[i] for i in permutation]))


def test_a_texts_vector_does_not_depend_on_its_batch_neighbours(tiny_model_dir, tiny):
    alone = tiny.encode(["red ceramic mug"])[0]
    with_others = tiny.encode(["blue glass vase", "red ceramic mug", "white hanging heart light holder"])[1]
    many = tiny.encode([f"{a} {b} mug" for a in WORDS[:4] for b in WORDS[4:8]] + ["red ceramic mug"])[-1]
    small_batches = load_encoder(EncoderConfig(model=tiny_model_dir, device="cpu", batch_size=2))
    in_pairs = small_batches.encode(TEXTS)[0]
    for other in (with_others, many, in_pairs):
        np.testing.assert_allclose(other, alone, rtol=0, atol=1e-6)


def test_batches_hold_one_token_length_and_at_most_batch_size_texts():
    lengths = [3, 3, 3, 5, 5, 7, 3]
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches = _length_batches(order, lengths, batch_size=2)
    assert batches == [[0, 1], [2, 6], [3, 4], [5]]
    assert all(len({lengths[i] for i in batch}) == 1 for batch in batches)


def test_empty_text_gets_a_consistent_unit_vector(tiny):
    vectors = tiny.encode(["", "red ceramic mug", ""])
    assert np.array_equal(vectors[0], vectors[2])
    assert np.linalg.norm(vectors[0]) == pytest.approx(1.0, abs=1e-6)
    assert not np.array_equal(vectors[0], vectors[1])


def test_long_texts_are_truncated_to_max_length(tiny_model_dir):
    encoder = load_encoder(EncoderConfig(model=tiny_model_dir, device="cpu", max_length=8))
    assert max(len(ids) for ids in encoder.tokenize(["red " * 100])) == 8
    long_a, long_b = encoder.encode(["red mug " * 50, "red mug " * 60])
    assert np.array_equal(long_a, long_b)  # both cut to the same 8 tokens


def test_bf16_autocast_stays_close_to_fp32(tiny_model_dir, tiny):
    bf16 = load_encoder(EncoderConfig(model=tiny_model_dir, device="cpu", precision="bf16"))
    assert bf16.precision == "bf16" and tiny.precision == "fp32"  # "auto" is fp32 on CPU
    low, full = bf16.encode(TEXTS), tiny.encode(TEXTS)
    assert low.dtype == np.float32
    assert np.min(np.sum(low * full, axis=1)) > 0.99


def test_non_string_input_is_rejected_with_its_position(tiny):
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        tiny.encode(["red mug", None])


# --- loading, identity, process cache ----------------------------------------------------------------------


def test_load_encoder_caches_per_config_and_shares_weights_per_model(tiny_model_dir, tiny):
    assert load_encoder(EncoderConfig(model=tiny_model_dir, device="cpu")) is tiny
    cls = load_encoder(EncoderConfig(model=tiny_model_dir, device="cpu", pooling="cls"))
    assert cls is not tiny and cls._model is tiny._model and cls._tokenizer is tiny._tokenizer


def test_model_id_is_stable_and_follows_the_files(tiny_model_dir, tiny, tmp_path):
    import shutil

    assert tiny.model_id.startswith("tiny-bert") and "@" in tiny.model_id
    assert TextEncoder(EncoderConfig(model=tiny_model_dir, device="cpu")).model_id == tiny.model_id
    changed = tmp_path / "tiny-bert0"
    shutil.copytree(tiny_model_dir, changed)
    config = (changed / "config.json").read_text()
    (changed / "config.json").write_text(config.replace('"hidden_act": "gelu"', '"hidden_act": "relu"'))
    assert TextEncoder(EncoderConfig(model=str(changed), device="cpu")).model_id != tiny.model_id


def test_missing_model_folder_fails_fast_naming_the_path():
    started = time.perf_counter()
    with pytest.raises(FileNotFoundError) as error:
        TextEncoder(EncoderConfig(model="/no/such/dir"))
    message = str(error.value)
    assert "/no/such/dir" in message and "config.json" in message and "tokenizer" in message
    assert time.perf_counter() - started < 5


def test_a_folder_that_is_not_a_model_is_named_in_the_error(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(FileNotFoundError, match="config.json") as error:
        TextEncoder(EncoderConfig(model=str(tmp_path)))
    assert str(tmp_path) in str(error.value)


def test_unknown_hub_name_offline_fails_fast_naming_it(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(OSError, match="no-such-org/no-such-model"):
        TextEncoder(EncoderConfig(model="no-such-org/no-such-model", device="cpu"))
    assert time.perf_counter() - started < 10


# --- CPU threads -------------------------------------------------------------------------------------------


def test_thread_count_respects_explicit_and_pinned_settings(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    assert _wanted_threads(0) is None  # "leave torch alone"
    assert _wanted_threads(3) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert _wanted_threads(None) is None  # the deployment pinned it


def test_thread_setting_is_restored_after_encoding(tiny_model_dir):
    before = torch.get_num_threads()
    with _torch_threads(before + 1):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before
    load_encoder(EncoderConfig(model=tiny_model_dir, device="cpu", num_threads=before + 1)).encode(TEXTS)
    assert torch.get_num_threads() == before


# --- the packaged model ------------------------------------------------------------------------------------


def test_packaged_minilm_loads_offline_and_agrees_with_sentence_transformers():
    texts = ["white hanging heart t-light holder", "red ceramic coffee mug", "blue ceramic tea cup",
             "garden spade with wooden handle", ""]
    encoder = load_encoder(EncoderConfig(device="cpu"))
    assert encoder.dim == 384 and encoder.model_id.startswith("all-MiniLM-L6-v2@")
    ours = encoder.encode(texts)
    assert ours[1] @ ours[2] > ours[1] @ ours[3]  # mug is nearer to cup than to spade
    sentence_transformers = pytest.importorskip("sentence_transformers")
    from recmodels.text_encoder import default_model_dir

    reference = sentence_transformers.SentenceTransformer(str(default_model_dir()), device="cpu").encode(
        texts, normalize_embeddings=True
    )
    assert np.min(np.sum(ours * reference, axis=1)) > 0.9999
