"""Names shared across the platform: asset keys, tables, the event contract (DESIGN.md §2-§4)."""

# Asset keys (DESIGN.md §1) and group names.
RAW_EVENTS = "raw_events"
USER_DAILY_ACTIVITY = "user_daily_activity"
USER_FEATURES = "user_features"
CHURN_LABELS = "churn_labels"
CHURN_MODEL = "churn_model"
PROMOTION_DECISION = "promotion_decision"
CHURN_SCORES = "churn_scores"

INGEST_GROUP = "ingest"
FEATURES_GROUP = "features"
MODEL_GROUP = "model"

# Landing zone layout: events/raw/date=YYYY-MM-DD/<name>.parquet
DEFAULT_LANDING_BUCKET = "churn-landing"
LANDING_PREFIX = "events/raw/"

# Event contract.
EVENT_TYPES = ("login", "session", "payment", "support_ticket", "cancel")
PLAN_TIERS = ("basic", "standard", "premium")
PAYMENT_STATUSES = ("succeeded", "failed")
EVENT_COLUMNS = (
    "event_id",
    "user_id",
    "event_type",
    "event_ts",
    "plan_tier",
    "session_seconds",
    "payment_status",
)

# Feature contract (DESIGN.md §3), in model input order.
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

# Windows, in days (DESIGN.md §3).
LOOKBACK_DAYS = 90
PAYMENT_WINDOW_DAYS = 30
SESSION_WINDOW_DAYS = 7
LABEL_WINDOW_DAYS = 28
TRAINING_LAG_WEEKS = 4

# MLflow (DESIGN.md §4).
REGISTERED_MODEL_NAME = "churn_prediction"
CHAMPION_ALIAS = "champion"
MLFLOW_EXPERIMENT = "churn_weekly_training"

# Dagster pools (concurrency keys).
WAREHOUSE_POOL = "warehouse"
TRAINING_POOL = "training"
