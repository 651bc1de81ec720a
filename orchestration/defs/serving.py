"""Batch recommendations from the registry's champion, refreshed when the champion changes."""

import time

import dagster as dg
from dagster import AssetExecutionContext
from pydantic import Field

from orchestration.defs.evaluation import promotion_decision
from orchestration.defs.resources import MLflowResource, PrivacyResource, WarehouseResource
from orchestration.serving.ranked import reuse_ranked, write_ranked
from orchestration.serving.service import NoChampionError, RecommendationService
from orchestration.store.reports import frame_markdown

RECOMMENDATIONS_TABLE = "ml.user_recommendations"


class UserRecommendationsConfig(dg.Config):
    k: int = Field(default=10, description="Recommendations per customer (1 to 100).")


# Without a champion there is nothing to serve yet: the asset then skips instead of failing the whole run.
@dg.asset(deps=[promotion_decision], group_name="serving", kinds={"duckdb", "mlflow"}, output_required=False,
          pool="user_recommendations")
def user_recommendations(
    context: AssetExecutionContext, config: UserRecommendationsConfig, warehouse: WarehouseResource,
    mlflow: MLflowResource, privacy: PrivacyResource,
):
    """Top-K items per known customer from the champion bundle, with score, rank, model version and the reason;
    and each customer's whole served answer in ``ml.ranked_answers``, which a server of this bundle over these marts
    reads instead of ranking everyone again."""
    started = time.perf_counter()
    try:
        service = RecommendationService.from_champion(warehouse, mlflow, privacy.key())
    except NoChampionError as error:
        context.log.warning(f"Not materialized: {error}")
        return
    reused = reuse_ranked(service, warehouse)  # what the promotion gate ranked ahead for this champion
    table = service.batch(config.k)
    table.insert(4, "model_version", service.version)
    table["as_of"] = service.data.as_of
    warehouse.write_table(RECOMMENDATIONS_TABLE, table)
    # What a server loading this champion reads; not written again when the table held every answer already.
    ranked = reused if reused == len(service.answers) else write_ranked(warehouse, service)
    seconds = time.perf_counter() - started
    kinds = table["explanation"].value_counts(normalize=True).round(4).to_dict()
    context.log.info(f"{table['user_id'].nunique():,} customers, champion version {service.version}, {seconds:.1f} s")
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(table),
            "customers": int(table["user_id"].nunique()),
            "model_version": service.version,
            "explanations": dg.MetadataValue.json(kinds),
            "catalogue_coverage": round(table["item_id"].nunique() / max(len(service.bundle.item_ids), 1), 4),
            "seconds": round(seconds, 2),
            "sample": dg.MetadataValue.md(frame_markdown(table.head(10).drop(columns=["as_of"]))),
            "table": RECOMMENDATIONS_TABLE,
            "ranked_answers": ranked,
        }
    )


serving_assets = [user_recommendations]
