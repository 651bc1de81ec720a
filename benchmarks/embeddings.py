"""Item-text embeddings: our encoder against sentence-transformers, the cache, a quality sanity check.

    python -m benchmarks.embeddings --data ../shared/data/online_retail/online_retail.csv.gz
    python -m benchmarks.embeddings --device cuda --repeats 5

Texts: the distinct product descriptions of an Online Retail file (.csv, .csv.gz or .parquet), cleaned as item
text is (``recmodels.item_text.clean_field``), empty ones dropped: about 4.2k short titles.

* Throughput: ``TextEncoder.encode`` against ``SentenceTransformer(<the same model folder>).encode`` on the
  same texts, same process, same device, same batch size and thread count. Both are warmed up first, then
  timed ``--repeats`` times each, interleaved in ABBA order so that load from other processes hits both alike.
  ``speedup`` compares the best times (the least disturbed runs); ``speedup_median`` the medians. On CUDA ours
  runs with fp16 autocast and the reference as it loads by default (``ours_precision``,
  ``reference_precision``).
* Agreement: the cosine between both outputs for every text (``min_cosine``).
* Cache: a fresh DuckDB file, first run (all embedded); then, on a new connection as a later run would open
  it, three reruns (nothing embedded; ``rerun_s`` is the first, the coldest; all three are listed), then 10
  edited texts.
* Quality: 20 texts sampled with a fixed seed, their 3 nearest neighbours by cosine, and whether a neighbour
  shares a product-type word (mug, bag, holder, ...; a fixed list below) with the text.
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import gc
import re
import statistics
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import torch

from benchmarks.common import SHARED_DATA, emit_json, machine, print_table
from orchestration.store.embedding_cache import embed_with_cache
from recmodels.item_text import clean_field
from recmodels.text_encoder import EncoderConfig, available_cpus, default_model_dir, load_encoder

# Product-type nouns of a gift shop (singular); a text's type words are those of its words found here.
PRODUCT_TYPES = frozenset("""
    apron bag balloon basket bead bell bottle bowl box bracelet brooch bunting cabinet cake calendar candle
    card case chalkboard charm clip clock coaster cup cushion decoration dish doily doiley doilie doormat
    drawer earring envelope frame garland glass hanger hook jar jigsaw kit knob lamp lantern light magnet
    mirror mug napkin necklace notebook ornament pen pencil peg plate pot pouch purse rack ribbon ring sign
    spoon stand sticker tag tape teapot tile tin tissue towel toy tray umbrella vase wallet warmer wreath
""".split())
SAMPLE_SEED = 20240601
N_SAMPLED = 20
N_NEIGHBOURS = 3


def read_texts(path: str) -> list[str]:
    """Distinct cleaned descriptions of an Online Retail export, sorted, empty ones dropped."""
    reader = "read_parquet" if path.endswith(".parquet") else "read_csv"
    quoted = path.replace("'", "''")
    with duckdb.connect() as con:
        raw = con.sql(
            f"select distinct Description from {reader}('{quoted}') where Description is not null"
        ).fetchall()
    return sorted({clean_field(description) for (description,) in raw} - {""})


def type_words(text: str) -> set[str]:
    found = set()
    for word in re.findall(r"[a-z]+", text.lower()):
        singulars = (word, word[:-1] if word.endswith("s") else "", word[:-2] if word.endswith("es") else "")
        for singular in singulars:
            if singular in PRODUCT_TYPES:
                found.add(singular)
                break
    return found


def timed(function) -> tuple[float, np.ndarray]:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    result = function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - started, result


def reference_padded_tokens(lengths: np.ndarray, texts: list[str], batch_size: int) -> int:
    """Tokens (padding included) the reference feeds its model: it sorts by characters, pads per batch."""
    order = np.argsort([-len(text) for text in texts], kind="stable")
    return int(sum(lengths[order[i:i + batch_size]].max() * len(order[i:i + batch_size])
                   for i in range(0, len(order), batch_size)))


def neighbour_table(texts: list[str], vectors: np.ndarray) -> tuple[list[tuple], float, int]:
    sampled = np.random.default_rng(SAMPLE_SEED).choice(len(texts), size=N_SAMPLED, replace=False)
    rows, shared, counted = [], 0, 0
    for index in sampled:
        similarity = vectors @ vectors[index]
        similarity[index] = -np.inf
        neighbours = np.argsort(-similarity, kind="stable")[:N_NEIGHBOURS]
        own = type_words(texts[index])
        marks = []
        for neighbour in neighbours:
            if own:
                hit = bool(own & type_words(texts[neighbour]))
                shared, counted = shared + hit, counted + 1
                marks.append("y" if hit else "n")
            else:
                marks.append("-")
        rows.append((texts[index], [(texts[n], float(similarity[n])) for n in neighbours], marks))
    return rows, (shared / counted if counted else float("nan")), counted


def print_neighbours(rows: list[tuple]) -> None:
    title = f"{N_NEIGHBOURS} nearest neighbours of {N_SAMPLED} sampled texts (y/n: share a product-type word)"
    print(title)
    print("-" * len(title))
    for text, neighbours, marks in rows:
        print(f"{text[:44]:<44}")
        for (neighbour, similarity), mark in zip(neighbours, marks):
            print(f"    {mark}  {similarity:.3f}  {neighbour[:60]}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(SHARED_DATA / "online_retail" / "online_retail.csv.gz"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=None, help="both encoders (default: by device)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each encoder")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for both encoders (default: every CPU available to the process)")
    args = parser.parse_args()

    texts = read_texts(args.data)
    # Same thread count for both, set once: ours would otherwise raise it for itself only.
    if args.device == "cpu":
        torch.set_num_threads(args.threads or max(torch.get_num_threads(), available_cpus()))
    encoder = load_encoder(EncoderConfig(device=args.device, batch_size=args.batch_size, num_threads=0))
    batch_size = encoder.batch_size

    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(default_model_dir()), device=args.device)

    def ours() -> np.ndarray:
        return encoder.encode(texts)

    def theirs() -> np.ndarray:
        return reference.encode(
            texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True
        )

    warm = texts[:: max(1, len(texts) // 512)]
    encoder.encode(warm)
    reference.encode(warm, batch_size=batch_size, normalize_embeddings=True)
    times: dict[str, list[float]] = {"ours": [], "reference": []}
    outputs: dict[str, np.ndarray] = {}
    for repeat in range(args.repeats):
        pair = (("ours", ours), ("reference", theirs))
        for name, function in pair if repeat % 2 == 0 else pair[::-1]:
            seconds, outputs[name] = timed(function)
            times[name].append(seconds)
    best = {name: min(values) for name, values in times.items()}
    median = {name: statistics.median(values) for name, values in times.items()}
    cosines = np.sum(outputs["ours"] * outputs["reference"], axis=1)
    lengths = np.array([len(ids) for ids in encoder.tokenize(texts)])

    with tempfile.TemporaryDirectory(prefix="recsys-embeddings-") as folder:
        cache_path = str(Path(folder) / "cache.duckdb")
        with duckdb.connect(cache_path) as con:
            _, first = embed_with_cache(con, texts, encoder)
        with duckdb.connect(cache_path) as con:  # a later run opens the warehouse afresh
            reruns = [embed_with_cache(con, texts, encoder)[1] for _ in range(3)]
            to_edit = set(range(0, len(texts), max(1, len(texts) // 10))[:10])
            edited = [f"{text} v2" if i in to_edit else text for i, text in enumerate(texts)]
            _, incremental = embed_with_cache(con, edited, encoder)
    rerun_s = reruns[0].seconds  # the realistic one: the first lookup of a freshly opened warehouse

    rows, share, counted = neighbour_table(texts, outputs["ours"])
    figures = {
        **machine(),
        "device": str(encoder.device),
        "torch_threads": torch.get_num_threads(),
        "model_id": encoder.model_id,
        "ours_precision": encoder.precision,
        "reference_precision": str(next(reference.parameters()).dtype).removeprefix("torch."),
        "batch_size": batch_size,
        "repeats": args.repeats,
        "n_texts": len(texts),
        "ours_texts_per_s": round(len(texts) / best["ours"], 1),
        "reference_texts_per_s": round(len(texts) / best["reference"], 1),
        "speedup": round(best["reference"] / best["ours"], 2),
        "speedup_median": round(median["reference"] / median["ours"], 2),
        "ours_times_s": [round(t, 3) for t in times["ours"]],
        "reference_times_s": [round(t, 3) for t in times["reference"]],
        "ours_tokens": int(lengths.sum()),
        "reference_padded_tokens_est": reference_padded_tokens(lengths, texts, batch_size),
        "min_cosine": round(float(cosines.min()), 7),
        "mean_cosine": round(float(cosines.mean()), 7),
        "first_run_s": round(first.seconds, 3),
        "first_run_embedded": first.n_embedded,
        "rerun_s": round(rerun_s, 4),
        "rerun_times_s": [round(rerun.seconds, 4) for rerun in reruns],
        "rerun_embedded": max(rerun.n_embedded for rerun in reruns),
        "rerun_speedup": round(first.seconds / rerun_s, 1),
        "incremental_s": round(incremental.seconds, 4),
        "incremental_embedded": incremental.n_embedded,
        "neighbour_share_type_word": round(share, 3),
        "neighbour_pairs_counted": counted,
    }
    print_neighbours(rows)
    print()
    shown = {**figures, "min_cosine": f"{figures['min_cosine']:.7f}", "rerun_s": f"{figures['rerun_s']:.4f}",
             "first_run_s": f"{figures['first_run_s']:.3f}"}
    print_table([(name, shown[name]) for name in (
        "device", "torch_threads", "model_id", "ours_precision", "batch_size", "n_texts",
        "ours_texts_per_s", "reference_texts_per_s", "speedup", "speedup_median", "ours_tokens",
        "reference_padded_tokens_est", "min_cosine", "first_run_s", "rerun_s", "rerun_embedded",
        "rerun_speedup", "incremental_embedded", "neighbour_share_type_word")], "Embeddings benchmark")
    emit_json(figures)


if __name__ == "__main__":
    main()
