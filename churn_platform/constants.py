"""Names shared across the platform: asset keys, groups, pools, feature columns, MLflow names.

The event contract and landing layout live in `events.py`; window lengths in `windows.py`.
"""

# Asset keys (docs/contract.md §1) and group names.
RAW_EVENTS = "raw_events"
USER_DAILY_ACTIVITY = "user_daily_activity"
USER_FEATURES = "user_features"
CHURN_LABELS = "churn_labels"
CHURN_MODEL = "churn_model"
PROMOTION_DECISION = "promotion_decision"
CHURN_SCORES = "churn_scores"
REALIZED_PERFORMANCE = "realized_performance"

INGEST_GROUP = "ingest"
FEATURES_GROUP = "features"
MODEL_GROUP = "model"

DEFAULT_LANDING_BUCKET = "churn-landing"
DEFAULT_SCORES_PREFIX = "scores/"  # churn scores for the CRM, in CHURN_SCORES_BUCKET (docs/contract.md §3)

# Feature contract (docs/contract.md §3), in model input order.
FEATURE_COLUMNS = (
    "days_since_last_login",
    "payment_attempts_30d",
    "payment_failures_30d",
    "payment_failure_rate",
    "avg_session_length_7d",
    "support_tickets_90d",
    "plan_tier",
)
LABEL_COLUMN = "churned"

# MLflow (docs/contract.md §4).
REGISTERED_MODEL_NAME = "churn_prediction"
CHAMPION_ALIAS = "champion"
MLFLOW_EXPERIMENT = "churn_weekly_training"

# Dagster pools (concurrency keys).
WAREHOUSE_POOL = "warehouse"
TRAINING_POOL = "training"
PROMOTION_POOL = "promotion"

# DuckDB ingest: landed rows per transaction (CHURN_INGEST_BATCH_ROWS; ingest/load.py).
DEFAULT_INGEST_BATCH_ROWS = 2_000_000
