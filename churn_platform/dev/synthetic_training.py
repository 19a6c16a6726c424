"""Synthetic training frames shaped like the user_features + churn_labels join (tests, bench)."""

import numpy as np
import pandas as pd
from sklearn.datasets import make_classification

from churn_platform.constants import LABEL_COLUMN
from churn_platform.events import PLAN_TIERS


def synthetic_training_frame(n_rows: int = 12_000, seed: int = 0) -> pd.DataFrame:
    """make_classification signal mapped monotonically onto the seven contract features."""
    X, y = make_classification(
        n_samples=n_rows,
        n_features=6,
        n_informative=4,
        n_redundant=1,
        weights=[0.85],
        flip_y=0.03,
        class_sep=0.8,
        random_state=seed,
    )
    attempts = np.clip(np.round(2 + X[:, 1]), 0, 10).astype("int64")
    failures = np.minimum(attempts, np.clip(np.round(0.5 + X[:, 2]), 0, None)).astype("int64")
    tier_index = np.digitize(X[:, 5], np.quantile(X[:, 5], [1 / 3, 2 / 3]))
    return pd.DataFrame(
        {
            "as_of_date": pd.Timestamp("2024-01-07").date(),
            "user_id": np.arange(n_rows, dtype="int64"),
            "days_since_last_login": np.clip(np.round(30 + 20 * X[:, 0]), 0, 90).astype("int64"),
            "payment_attempts_30d": attempts,
            "payment_failures_30d": failures,
            "payment_failure_rate": failures / np.maximum(attempts, 1),
            "avg_session_length_7d": np.clip(300 + 150 * X[:, 3], 0, None),
            "support_tickets_90d": np.clip(np.round(1 + X[:, 4]), 0, None).astype("int64"),
            "plan_tier": np.asarray(PLAN_TIERS, dtype=object)[tier_index],
            LABEL_COLUMN: y.astype("int64"),
        }
    )
