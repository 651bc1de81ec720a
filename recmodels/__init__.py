"""recmodels: the pure ML library (data shaping, encoders, models, training, metrics); never imports dagster, dbt or mlflow."""
