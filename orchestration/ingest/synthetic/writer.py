"""The entry point: seed derivation, ``items.csv``, the chunked gzip stream of order lines, ``stats.json``."""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import json
from pathlib import Path

import numpy as np

from orchestration.ingest.synthetic.catalogue import Catalogue, build_catalogue, items_frame
from orchestration.ingest.synthetic.chunk import generate_chunk
from orchestration.ingest.synthetic.config import (
    DIRT_KINDS,
    FIRST_INVOICE_NUMBER,
    ORDER_LINES_HEADER,
    SyntheticShopConfig,
    SyntheticShopFiles,
    validate,
)
from orchestration.ingest.synthetic.context import Context, make_context


def write_synthetic_shop(directory: Path, config: SyntheticShopConfig) -> SyntheticShopFiles:
    """Write order_lines.csv.gz, items.csv and stats.json into ``directory`` (created if missing).

    The files are a pure function of ``config``: the same config gives byte-identical files.
    """
    validate(config)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    catalogue_seq, users_seq = np.random.SeedSequence(config.seed).spawn(2)
    cat = build_catalogue(config, np.random.default_rng(catalogue_seq))
    ctx = make_context(config, cat)

    items_path = directory / "items.csv"
    items_frame(cat).to_csv(items_path, index=False, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    order_lines_path = directory / "order_lines.csv.gz"
    n_lines, n_invoices, totals = _write_order_lines(order_lines_path, ctx, users_seq)
    stats = _stats(config, cat, n_lines, n_invoices, totals)
    (directory / "stats.json").write_text(json.dumps(stats, indent=2, sort_keys=False) + "\n")
    return SyntheticShopFiles(
        directory=directory, order_lines=order_lines_path, items=items_path, stats=stats
    )


def _write_order_lines(
    path: Path, ctx: Context, users_seq: np.random.SeedSequence
) -> tuple[int, int, dict[str, int]]:
    """Stream every chunk into ``path``; return (lines, invoices, per-key totals of the chunk counts).

    One spawned generator per chunk keeps memory flat and makes ``chunk_users`` part of the seed derivation;
    mtime=0 and an empty file name keep the gzip bytes a function of the content alone.
    """
    config = ctx.config
    n_chunks = -(-config.n_users // config.chunk_users)
    chunk_seqs = users_seq.spawn(n_chunks)
    totals: dict[str, int] = {}
    n_lines = 0
    next_invoice = FIRST_INVOICE_NUMBER
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=config.gzip_level, mtime=0) as gz,
        io.TextIOWrapper(gz, encoding="utf-8", newline="\n") as out,
    ):
        out.write(ORDER_LINES_HEADER + "\n")
        for c in range(n_chunks):
            lo, hi = c * config.chunk_users, min(config.n_users, (c + 1) * config.chunk_users)
            lines, counts, n_invoices = generate_chunk(
                ctx, np.random.default_rng(chunk_seqs[c]), lo, hi, next_invoice
            )
            if lines:
                out.write("\n".join(lines))
                out.write("\n")
            n_lines += len(lines)
            next_invoice += n_invoices
            for key, value in counts.items():
                totals[key] = totals.get(key, 0) + int(value)
    return n_lines, next_invoice - FIRST_INVOICE_NUMBER, totals


def _stats(
    config: SyntheticShopConfig, cat: Catalogue, n_lines: int, n_invoices: int, totals: dict[str, int]
) -> dict:
    """Sizes, then the dirt counts in DIRT_KINDS order, then the other chunk totals, then the config."""
    end = np.datetime64(config.end_date, "D")
    return {
        "n_order_lines": n_lines,
        "n_items": int(cat.code.size),
        "n_users": config.n_users,
        "n_textless_items": int(cat.textless.sum()),
        "n_categories": config.n_categories,
        "n_invoices": n_invoices,
        "first_day": str(end - np.timedelta64(config.n_days - 1, "D")),
        "last_day": config.end_date,
        **{kind: totals.get(kind, 0) for kind in DIRT_KINDS},
        "matched_cancellations": totals.get("matched_cancellations", 0),
        **{k: v for k, v in totals.items() if k not in DIRT_KINDS and k != "matched_cancellations"},
        "config": dataclasses.asdict(config),
    }
