"""The baselines every model has to beat, fit on the same split as SASRec; options they leave open are chosen on
the validation rows, as SASRec's epochs are."""

import time

import dagster as dg
import numpy as np
from dagster import AssetExecutionContext
from pydantic import Field

from orchestration.defs.models import text_matrix, user_sequences
from orchestration.defs.resources import WarehouseResource
from orchestration.store.model_files import replaced_folder, write_lineage
from recmodels.baselines import (
    BUY_AGAIN_GRID,
    ITEM_KNN_GRID,
    POPULARITY_GRID,
    BuyAgain,
    ItemKNN,
    MostPopular,
    RecentPopular,
    TextKNN,
    pick_options,
    save_baselines,
    with_behaviour_weights,
)
from recmodels.splits import PHASES, StoredSplit, load_split


class BaselineModelsConfig(dg.Config):
    recent_fraction: float = Field(
        default=RecentPopular.fraction, description="Recent popularity: share of latest training events that counts."
    )
    buy_again_decay: float | None = Field(
        default=None, description="Buy-again: weight ratio between a purchase and the next one; null: the value of "
        "recmodels.baselines.BUY_AGAIN_GRID that ranks the validation rows best.",
    )
    item_knn_neighbours: int | None = Field(
        default=None, description="Item-kNN: similar items kept per item. Null in every item-kNN option: the "
        "options of recmodels.baselines.ITEM_KNN_GRID that rank the validation rows best; else the library's "
        "default for each one left null.",
    )
    item_knn_window: int | None = Field(default=None, description="Item-kNN: co-occurrence within this many positions.")
    item_knn_shrink: float | None = Field(default=None, description="Item-kNN: added to the cosine denominator.")
    item_knn_decay: float | None = Field(
        default=None, description="Item-kNN: history weight ratio between an event and the next one."
    )
    item_knn_behaviour_weight: float | None = Field(
        default=None, description="Item-kNN: a view, cart or favourite counts as this fraction of a purchase; null "
        "with the other item-kNN options: chosen on validation among recmodels.baselines.BEHAVIOUR_WEIGHTS.",
    )
    popularity_behaviour_weight: float | None = Field(
        default=None, description="Popularity and recent popularity: a view, cart or favourite counts as this fraction "
        "of a purchase; null: chosen on validation among recmodels.baselines.BEHAVIOUR_WEIGHTS where the shop has them.",
    )
    text_knn_decay: float = Field(
        default=TextKNN.decay, description="Text-kNN: weight ratio between a history event and the next one."
    )

    def given(self, prefix: str) -> dict:
        """The options named ``prefix``_* that were given (not null), without the prefix."""
        return {name.removeprefix(prefix): value for name, value in self.__dict__.items()
                if name.startswith(prefix) and value is not None}


def choose_options(config: BaselineModelsConfig, stored: StoredSplit) -> tuple[dict[str, dict], dict[str, dict]]:
    """Options per tunable baseline: the given ones, or the grid's best on the validation rows; and, where a grid
    was searched, each option's validation NDCG@10."""
    split = stored.split
    chosen, searched = {}, {}
    for name, model_class, prefix, grid in (("popularity", MostPopular, "popularity_", POPULARITY_GRID),
                                            ("buy-again", BuyAgain, "buy_again_", BUY_AGAIN_GRID),
                                            ("item-knn", ItemKNN, "item_knn_", ITEM_KNN_GRID)):
        given = config.given(prefix)
        if given:
            chosen[name] = given
            continue
        if model_class is not BuyAgain:  # buying again is about purchases; the others may count browsing
            grid = with_behaviour_weights(grid, split.train, split.n_items)
        if len(grid) == 1:
            chosen[name] = dict(grid[0])
            continue
        chosen[name], scores = pick_options(model_class, grid, split.train, split.validation, split.n_items)
        searched[name] = {str(options or "defaults"): round(score, 4) for options, score in zip(grid, scores)}
    return chosen, searched


def _fit_baselines(config: BaselineModelsConfig, options: dict[str, dict], stored: StoredSplit, phase: str,
                   text: np.ndarray) -> tuple[dict, dict]:
    train, times, _ = stored.training(phase)
    n_items = stored.split.n_items
    builders = {
        "popularity": lambda: MostPopular(**options["popularity"]).fit(train, n_items),
        # Recent popularity counts browsing as much as popularity was found to.
        "recent-popularity": lambda: RecentPopular(fraction=config.recent_fraction, **options["popularity"]).fit(
            train, n_items, timestamps=times),
        "buy-again": lambda: BuyAgain(**options["buy-again"]).fit(train, n_items),
        "item-knn": lambda: ItemKNN(**options["item-knn"]).fit(train, n_items),
        "text-knn": lambda: TextKNN(decay=config.text_knn_decay).fit(train, n_items, text),
    }
    models, seconds = {}, {}
    for name, build in builders.items():
        started = time.perf_counter()
        models[name] = build()
        seconds[name] = round(time.perf_counter() - started, 3)
    return models, seconds


@dg.asset(deps=[user_sequences, dg.AssetKey("item_embeddings")], group_name="models", kinds={"numpy", "scipy"},
          pool="baseline_models")
def baseline_models(
    context: AssetExecutionContext, config: BaselineModelsConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Popularity, recent popularity, buy-again, item-kNN and text-kNN, fit on the same split as SASRec; buy-again's
    and item-kNN's options chosen on the validation rows unless given."""
    paths = warehouse.artifacts
    stored = load_split(paths.split_file)
    text, items_with_text = text_matrix(warehouse, stored.split.item_ids)
    options, searched = choose_options(config, stored)
    context.log.info(f"Baseline options: {options}")
    fit_seconds = {}
    for phase in PHASES:
        models, fit_seconds[phase] = _fit_baselines(config, options, stored, phase, text)
        with replaced_folder(paths.baselines_dir(phase)) as folder:
            save_baselines(models, folder, {"fit_seconds": fit_seconds[phase]})
            write_lineage(folder, stored)
    context.log.info(f"Baselines fit in {sum(fit_seconds['test'].values()):.2f} s (test phase)")
    return dg.MaterializeResult(
        metadata={
            "models": dg.MetadataValue.json(list(fit_seconds["test"])),
            **{f"fit_s/{name}": seconds for name, seconds in fit_seconds["test"].items()},
            "fit_seconds": dg.MetadataValue.json(fit_seconds),
            "options": dg.MetadataValue.json(options),
            "validation_ndcg@10_per_option": dg.MetadataValue.json(searched),
            "items_with_text": items_with_text,
            "folder": dg.MetadataValue.path(str(paths.models_dir / "baselines")),
        }
    )


baseline_assets = [baseline_models]
