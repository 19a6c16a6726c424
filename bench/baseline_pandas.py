"""The pandas + GradientBoosting baseline (the origin lesson's approach): every event in one pandas DataFrame, features with pandas ops, GBC300.

Computes the training set of the measured partition (features at L joined with the labels
at L, docs/contract.md §3) and fits the baseline GradientBoostingClassifier(300, 0.05) on its own
split: sklearn's train_test_split, stratified 80/20, random_state 42.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from churn_platform.constants import FEATURE_COLUMNS, LABEL_COLUMN
from churn_platform.windows import LABEL_WINDOW_DAYS
from churn_platform.ml.training import prepare_features, baseline_estimator


def read_events(paths: list[Path]) -> pd.DataFrame:
    """All landed files as one DataFrame, with each event's UTC date."""
    events = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    events["event_date"] = events["event_ts"].dt.floor("D")
    return events


def _days_before(as_of: pd.Timestamp, days: int) -> pd.Timestamp:
    return as_of - pd.Timedelta(days=days)


def features_at(events: pd.DataFrame, as_of: dt.date) -> pd.DataFrame:
    """One row per user in the population at as_of, indexed by user_id."""
    a = pd.Timestamp(as_of, tz="UTC")
    upto = events[events["event_date"] <= a]
    cancelled = upto.loc[upto["event_type"] == "cancel", "user_id"].unique()
    window = upto[(upto["event_date"] >= _days_before(a, 89)) & ~upto["user_id"].isin(cancelled)]
    users = pd.Index(sorted(window["user_id"].unique()), name="user_id")
    kind = window["event_type"]

    def count(mask: pd.Series) -> pd.Series:
        return window[mask].groupby("user_id").size().reindex(users, fill_value=0)

    last_login = window[kind == "login"].groupby("user_id")["event_date"].max().reindex(users)
    payments = (kind == "payment") & (window["event_date"] >= _days_before(a, 29))
    sessions = window[(kind == "session") & (window["event_date"] >= _days_before(a, 6))]
    latest = window.sort_values(["event_ts", "event_id"]).groupby("user_id")["plan_tier"].last()
    features = pd.DataFrame(index=users)
    features["days_since_last_login"] = (a - last_login).dt.days.fillna(90).astype("int64")
    features["payment_attempts_30d"] = count(payments)
    features["payment_failures_30d"] = count(payments & (window["payment_status"] == "failed"))
    features["payment_failure_rate"] = (
        features["payment_failures_30d"] / features["payment_attempts_30d"].clip(lower=1)
    )
    features["avg_session_length_7d"] = (
        sessions.groupby("user_id")["session_seconds"].mean().reindex(users).fillna(0.0)
    )
    features["support_tickets_90d"] = count(kind == "support_ticket")
    features["plan_tier"] = latest.reindex(users)
    return features


def labels_at(events: pd.DataFrame, users: pd.Index, as_of: dt.date) -> pd.Series:
    """churned = 1 for users of `users` with a cancel in (as_of, as_of + 28]."""
    a = pd.Timestamp(as_of, tz="UTC")
    after = events["event_date"] > a
    within = events["event_date"] <= a + pd.Timedelta(days=LABEL_WINDOW_DAYS)
    cancelled = events.loc[(events["event_type"] == "cancel") & after & within, "user_id"].unique()
    return pd.Series(users.isin(cancelled).astype("int64"), index=users, name=LABEL_COLUMN)


def fit_on_baseline_split(training: pd.DataFrame, model) -> tuple[float, float]:
    """Fit on the baseline's split (one OpenMP thread, as the platform trains); (fit seconds, holdout ROC AUC)."""
    X_train, X_test, y_train, y_test = train_test_split(
        prepare_features(training), training[LABEL_COLUMN], test_size=0.2,
        stratify=training[LABEL_COLUMN], random_state=42,
    )
    with threadpool_limits(limits=1, user_api="openmp"):
        started = time.perf_counter()
        model.fit(X_train, y_train)
        fit_seconds = time.perf_counter() - started
    return fit_seconds, float(roc_auc_score(y_test, model.predict_proba(X_test)[:, 1]))


def run(paths: list[Path], as_of: dt.date, training_set_path: Path) -> dict:
    """Read, build the training set at as_of, fit GBC300; stage times, rows and AUC."""
    started = time.perf_counter()
    events = read_events(paths)
    read = time.perf_counter()
    features = features_at(events, as_of)
    training = features.assign(**{LABEL_COLUMN: labels_at(events, features.index, as_of)})
    training = training.reset_index().assign(as_of_date=as_of)
    built = time.perf_counter()
    del events
    fit_seconds, auc = fit_on_baseline_split(training, baseline_estimator())
    finished = time.perf_counter()
    training[["as_of_date", "user_id", *FEATURE_COLUMNS, LABEL_COLUMN]].to_parquet(training_set_path)
    return {
        "seconds": finished - started,
        "read_seconds": read - started,
        "features_labels_seconds": built - read,
        "train_seconds": finished - built,
        "fit_seconds": fit_seconds,
        "rows": len(training),
        "roc_auc": auc,
    }
