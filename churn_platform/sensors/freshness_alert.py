"""Alert when churn_model or churn_scores turns stale, and again when it is fresh.

Dagster's freshness daemon keeps each asset's freshness state (PASS, WARN, FAIL, UNKNOWN) and
shows it in the UI; alerting on it is a Dagster+ feature. This sensor reads those states,
remembers in its cursor the last one it saw per asset, and sends one notification per change
through the Notifier, the channel run failures use.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import dagster as dg

from churn_platform.freshness import FAIL_AFTER, WARN_AFTER, WATCHED_ASSETS
from churn_platform.resources.notify import Notifier

FRESHNESS_SENSOR = "freshness_alert"
STALE = ("WARN", "FAIL")


@dataclass(frozen=True)
class StateChange:
    asset: str
    previous: str
    state: str
    last_materialized: float | None  # epoch seconds of the newest materialization of any partition
    partition: str | None


def needs_notice(previous: str, state: str) -> bool:
    """Into WARN or FAIL, between them, and back to PASS from them; not UNKNOWN -> PASS."""
    return state != previous and (state in STALE or (previous in STALE and state == "PASS"))


def freshness_message(change: StateChange, now: float, ui_url: str) -> str:
    age = "never materialized" if change.last_materialized is None else (
        f"last materialized {(now - change.last_materialized) / 86400:.1f} days ago"
        + (f" (partition {change.partition})" if change.partition else ""))
    headline = {
        "WARN": f":hourglass: {change.asset} is stale (WARN, older than {WARN_AFTER.days} days)",
        "FAIL": f":red_circle: {change.asset} failed its freshness policy (FAIL, older than {FAIL_AFTER.days} days)",
        "PASS": f":white_check_mark: {change.asset} is fresh again (was {change.previous})",
    }[change.state]
    return "\n".join([
        f"{headline}: {age}",
        f"policy: warn after {WARN_AFTER.days} days, fail after {FAIL_AFTER.days} days without a new materialization",
        f"{ui_url.rstrip('/')}/assets/{change.asset}",
    ])


def build_freshness_alert_sensor(ui_url: str, interval_seconds: int) -> dg.SensorDefinition:
    keys = [dg.AssetKey(asset) for asset in WATCHED_ASSETS]

    @dg.sensor(
        name=FRESHNESS_SENSOR,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Sends an alert (Slack or log) when churn_model or churn_scores turns stale or fresh again.",
    )
    def freshness_alert(context: dg.SensorEvaluationContext, notifier: Notifier):
        seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        records = context.instance.get_freshness_state_records(keys)
        latest = context.instance.get_latest_materialization_events(keys)
        now = dt.datetime.now(dt.timezone.utc).timestamp()
        states, sent = {}, []
        for key in keys:
            record = records.get(key)
            state = record.freshness_state.value if record else "UNKNOWN"
            previous = seen.get(key.to_user_string(), "UNKNOWN")
            states[key.to_user_string()] = state
            if not needs_notice(previous, state):
                continue
            event = latest.get(key)
            change = StateChange(
                asset=key.to_user_string(), previous=previous, state=state,
                last_materialized=event.timestamp if event else None,
                partition=event.dagster_event.partition if event and event.dagster_event else None)
            notifier.send(freshness_message(change, now, ui_url), log=context.log)
            sent.append(f"{change.asset} {previous} -> {state}")
        context.update_cursor(json.dumps(states, sort_keys=True))
        summary = ", ".join(f"{asset} {state}" for asset, state in states.items())
        return dg.SkipReason(f"notified: {'; '.join(sent)} (now {summary})" if sent
                             else f"no freshness change ({summary})")

    return freshness_alert
