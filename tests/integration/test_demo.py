"""What `make demo` prints after its run, read from the run itself."""

import duckdb

from orchestration.apps.demo import _model_line, _promotion_line


def test_the_demo_reports_each_models_test_ndcg_and_the_promotion(promoted):
    line = _model_line(promoted.result)
    with duckdb.connect(str(promoted.home / "warehouse.duckdb"), read_only=True) as con:
        ndcg = dict(con.execute(
            "select model, value from ml.evaluation_metrics where split = 'test' and variant = 'allowed' "
            "and segment = 'all' and metric = 'ndcg' and k = 10").fetchall())
    assert f"SASRec + ranker {ndcg['sasrec+ranker']:.4f}, SASRec {ndcg['sasrec']:.4f}" in line
    best = max((m for m in ndcg if m not in ("sasrec", "sasrec+ranker")), key=ndcg.get)
    assert f"best baseline {best} {ndcg[best]:.4f}" in line
    assert "recsys-recommender version 1 promoted; champion now 1." in _promotion_line(promoted.result)


def test_the_demo_names_a_customer_by_the_shops_own_id(promoted):
    from orchestration.apps.demo import shop_customer_ids
    from orchestration.store.privacy import pseudonymization_key, pseudonymize

    with duckdb.connect(str(promoted.home / "warehouse.duckdb"), read_only=True) as con:
        users = {row[0] for row in con.execute("select distinct user_id from ml.user_recommendations").fetchall()}
        shop_ids = shop_customer_ids(con, users, pseudonymization_key())
    assert set(shop_ids) == users  # every recommended customer came from a staged raw row with an id
    assert all(pseudonymize(raw, pseudonymization_key()) == user for user, raw in shop_ids.items())
    assert not any(raw.startswith("u_") for raw in shop_ids.values())


def test_the_demo_says_how_many_customers_the_headline_rests_on(promoted):
    from orchestration.apps.demo import interval_line
    from orchestration.store.warehouse import Warehouse

    with duckdb.connect(str(promoted.home / "warehouse.duckdb"), read_only=True) as con:
        low, high, customers = con.execute(
            "select ci_low, ci_high, n_rows from ml.evaluation_metrics where model = 'sasrec+ranker' and split = "
            "'test' and variant = 'allowed' and segment = 'all' and metric = 'ndcg' and k = 10").fetchone()
    assert low <= high and customers > 0
    assert interval_line(Warehouse(home=str(promoted.home))) == (
        f"sasrec+ranker's test NDCG@10 rests on {customers:,} customers: 95% interval {low:.4f} to {high:.4f} "
        "(bootstrap over customers).")
