"""How old the weekly outputs may get: the freshness policy of churn_model and churn_scores.

Both are rebuilt every Monday, so a healthy platform keeps them under 8 days old. Past 8 days one
Monday was missed (warn); past 15, two were (fail). Dagster's freshness daemon evaluates the
policy against the newest materialization of any partition and shows the state in the UI; the
`freshness_alert` sensor (sensors/freshness_alert.py) turns state changes into notifications.
"""

from datetime import timedelta

import dagster as dg

from churn_platform.constants import CHURN_MODEL, CHURN_SCORES

WARN_AFTER = timedelta(days=8)
FAIL_AFTER = timedelta(days=15)
WEEKLY_OUTPUT_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=FAIL_AFTER, warn_window=WARN_AFTER)
WATCHED_ASSETS = (CHURN_MODEL, CHURN_SCORES)
