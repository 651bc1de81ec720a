"""What every chunk of customers shares: the catalogue, its string tables, samplers, calendar, countries."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orchestration.ingest.synthetic.catalogue import Catalogue
from orchestration.ingest.synthetic.config import SyntheticShopConfig
from orchestration.ingest.synthetic.fields import Tables, build_tables
from orchestration.ingest.synthetic.sampling import GroupSampler
from orchestration.ingest.synthetic.vocabulary import (
    FOREIGN_COUNTRIES,
    PRODUCT_TYPES,
    STYLES,
    WEEKDAY_WEIGHTS,
)


@dataclass
class Context:
    """Shared by every chunk; computed once per shop from the config and the catalogue."""

    config: SyntheticShopConfig
    cat: Catalogue
    tables: Tables
    taste_sampler: GroupSampler  # group = category * n_styles + style
    category_sampler: GroupSampler  # group = category
    type_style_sampler: GroupSampler  # group = type * n_styles + style
    type_sampler: GroupSampler  # group = type
    global_cum: np.ndarray  # cumulative popularity over all items
    complements: np.ndarray  # (n_types, max_k) complement type ids, -1 padded
    n_complements: np.ndarray  # (n_types,)
    start_epoch: int  # seconds: day 0 at 00:00:00
    end_epoch: int  # seconds: end_date 23:59:59
    day_weight: np.ndarray  # (n_days,) relative order intensity
    countries: np.ndarray  # object
    country_p: np.ndarray


def _complement_types(cat: Catalogue) -> tuple[np.ndarray, np.ndarray]:
    """Per product type, its complement types present in the catalogue (-1 padded), and how many."""
    n_types = len(PRODUCT_TYPES)
    names = [t[0] for t in PRODUCT_TYPES]
    max_k = max(len(t[4]) for t in PRODUCT_TYPES)
    complements = np.full((n_types, max_k), -1, np.int64)
    n_complements = np.zeros(n_types, np.int64)
    present = set(cat.type_idx.tolist())
    for t, spec in enumerate(PRODUCT_TYPES):
        targets = [names.index(c) for c in spec[4] if names.index(c) in present]
        complements[t, : len(targets)] = targets
        n_complements[t] = len(targets)
    return complements, n_complements


def make_context(config: SyntheticShopConfig, cat: Catalogue) -> Context:
    """Everything a chunk needs besides its own generator: samplers, complements, calendar, countries."""
    n_styles, n_types = len(STYLES), len(PRODUCT_TYPES)
    complements, n_complements = _complement_types(cat)
    end = np.datetime64(config.end_date, "D")
    start = end - np.timedelta64(config.n_days - 1, "D")
    days = start + np.arange(config.n_days)
    weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    day_of_year = (days - days.astype("datetime64[Y]")).astype(np.int64)
    christmas_rush = 1.0 + 0.8 * np.exp(-(((day_of_year - 320) / 25.0) ** 2))
    countries = ["United Kingdom"] + [c for c, _ in FOREIGN_COUNTRIES]
    foreign = np.array([w for _, w in FOREIGN_COUNTRIES])
    country_p = np.concatenate(
        [[config.home_country_share], (1 - config.home_country_share) * foreign / foreign.sum()]
    )
    return Context(
        config=config,
        cat=cat,
        tables=build_tables(cat),
        taste_sampler=GroupSampler(
            cat.category_idx * n_styles + cat.style_idx, cat.popularity, config.n_categories * n_styles
        ),
        category_sampler=GroupSampler(cat.category_idx, cat.popularity, config.n_categories),
        type_style_sampler=GroupSampler(
            cat.type_idx * n_styles + cat.style_idx, cat.popularity, n_types * n_styles
        ),
        type_sampler=GroupSampler(cat.type_idx, cat.popularity, n_types),
        global_cum=np.cumsum(cat.popularity),
        complements=complements,
        n_complements=n_complements,
        start_epoch=int(start.astype("datetime64[s]").astype(np.int64)),
        end_epoch=int((end + 1).astype("datetime64[s]").astype(np.int64)) - 1,
        day_weight=WEEKDAY_WEIGHTS[weekday] * christmas_rush,
        countries=np.array(countries, dtype=object),
        country_p=country_p / country_p.sum(),
    )


def global_items(ctx: Context, u: np.ndarray) -> np.ndarray:
    """Items by global popularity, ignoring taste; u uniform in [0, 1)."""
    return np.minimum(
        np.searchsorted(ctx.global_cum, u * ctx.global_cum[-1], side="right"), len(ctx.global_cum) - 1
    )

