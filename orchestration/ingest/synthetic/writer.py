"""The entry point: seed derivation, ``items.csv``, the chunked gzip streams of order lines and of browsing events,
``stats.json``."""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import json
from pathlib import Path

import numpy as np

from orchestration.ingest.synthetic.browsing import INTERACTIONS_HEADER, browsing_lines
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
    """Write order_lines.csv.gz, items.csv, interactions.csv.gz (with ``config.browsing``) and stats.json into
    ``directory`` (created if missing).

    The files are a pure function of ``config``: the same config gives byte-identical files. Browsing draws from
    its own seeds (the third child of the config's seed), so it leaves the order lines as they are without it.
    """
    validate(config)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    catalogue_seq, users_seq, browsing_seq = np.random.SeedSequence(config.seed).spawn(3)
    cat = build_catalogue(config, np.random.default_rng(catalogue_seq))
    ctx = make_context(config, cat)

    items_path = directory / "items.csv"
    items_frame(cat).to_csv(items_path, index=False, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    order_lines_path = directory / "order_lines.csv.gz"
    interactions_path = directory / "interactions.csv.gz" if config.browsing else None
    n_lines, n_invoices, totals = _write_events(order_lines_path, interactions_path, ctx, users_seq, browsing_seq)
    stats = _stats(config, cat, n_lines, n_invoices, totals)
    (directory / "stats.json").write_text(json.dumps(stats, indent=2, sort_keys=False) + "\n")
    return SyntheticShopFiles(
        directory=directory, order_lines=order_lines_path, items=items_path, stats=stats,
        interactions=interactions_path,
    )


def _gzip_text(path: Path, level: int):
    """A text stream into a gzip file whose bytes depend on the content alone (mtime=0, no file name)."""
    raw = open(path, "wb")
    gz = gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=level, mtime=0)
    return raw, gz, io.TextIOWrapper(gz, encoding="utf-8", newline="\n")


def _write_events(
    path: Path, interactions_path: Path | None, ctx: Context, users_seq: np.random.SeedSequence,
    browsing_seq: np.random.SeedSequence,
) -> tuple[int, int, dict[str, int]]:
    """Stream every chunk's order lines into ``path`` and, unless ``interactions_path`` is None, its browsing
    events into that; return (order lines, invoices, per-key totals of the chunk counts).

    One spawned generator per chunk keeps memory flat and makes ``chunk_users`` part of the seed derivation.
    A chunk's browsing events are sorted by time within the chunk, not across chunks (the loader needs no order).
    """
    config = ctx.config
    n_chunks = -(-config.n_users // config.chunk_users)
    chunk_seqs, browsing_seqs = users_seq.spawn(n_chunks), browsing_seq.spawn(n_chunks)
    totals: dict[str, int] = {}
    n_lines = n_events = 0
    next_invoice, next_session = FIRST_INVOICE_NUMBER, 1
    streams = [_gzip_text(path, config.gzip_level)]
    if interactions_path is not None:
        streams.append(_gzip_text(interactions_path, config.gzip_level))
    try:
        out = streams[0][2]
        out.write(ORDER_LINES_HEADER + "\n")
        if interactions_path is not None:
            streams[1][2].write(INTERACTIONS_HEADER + "\n")
        for c in range(n_chunks):
            lo, hi = c * config.chunk_users, min(config.n_users, (c + 1) * config.chunk_users)
            chunk = generate_chunk(ctx, np.random.default_rng(chunk_seqs[c]), lo, hi, next_invoice)
            _write_lines(out, chunk.lines)
            n_lines += len(chunk.lines)
            next_invoice += chunk.n_invoices
            counts = dict(chunk.counts)
            if interactions_path is not None:
                events, browsing_counts, n_sessions = browsing_lines(
                    ctx, np.random.default_rng(browsing_seqs[c]), chunk.purchases, chunk.guest_order, lo,
                    next_session,
                )
                _write_lines(streams[1][2], events)
                n_events += len(events)
                next_session += n_sessions
                counts.update(browsing_counts)
            for key, value in counts.items():
                totals[key] = totals.get(key, 0) + int(value)
    finally:
        for raw, gz, text in reversed(streams):
            text.close()  # closes gz, which does not close the file object it was given
            raw.close()
    if interactions_path is not None:
        totals["n_interactions"] = n_events
    return n_lines, next_invoice - FIRST_INVOICE_NUMBER, totals


def _write_lines(out, lines: list[str]) -> None:
    if lines:
        out.write("\n".join(lines))
        out.write("\n")


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
