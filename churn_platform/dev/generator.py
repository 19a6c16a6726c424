"""Synthetic product events in the landing-zone contract (docs/contract.md §2).

Users sign up over time, log in and hold sessions most days, pay once per
billing cycle (with retries after a failure) and now and then open a support
ticket. A churner's behaviour degrades over the weeks before their single
`cancel` event, which is the signal the churn model has to learn; some churners
leave without warning and some loyal users go through risky-looking dips, so the
signal is real but not perfect.

Generation is vectorised with numpy one day at a time over arrays of per-user
state, so memory stays at one day of events plus a few arrays of length `users`.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from churn_platform.events import EVENT_TYPES, LANDED_SCHEMA, PAYMENT_STATUSES, PLAN_TIERS, landing_key

LOGIN, SESSION, PAYMENT, SUPPORT_TICKET, CANCEL = range(len(EVENT_TYPES))
SUCCEEDED, FAILED = range(len(PAYMENT_STATUSES))

# Churn: a live user's chance of cancelling within 28 days, before the
# per-user risk multiplier (mean 1); the measured label rate is about 8%.
CHURN_28D = 0.09
DAILY_HAZARD = 1.0 - (1.0 - CHURN_28D) ** (1.0 / 28.0)
# Churners who give no warning at all, and how far ahead the others start to fade.
SILENT_CHURN_SHARE = 0.1
RAMP_DAYS = (28, 43)
# Loyal users who fade for a while and recover, so risk does not mean churn.
DIP_DAILY_CHANCE = 0.002
DIP_DAYS = (14, 43)
DIP_DEPTH = (0.3, 0.9)

PLAN_SHARES = (0.5, 0.35, 0.15)
PLAN_HAZARD = (1.25, 0.9, 0.6)
PLAN_CHANGE_DAILY_CHANCE = 0.0008

BILLING_CYCLE_DAYS = 30
RETRY_AFTER_DAYS = 3
MAX_RETRIES = 2
NO_DAY = np.iinfo(np.int32).min // 2

MICROS_PER_DAY = 86_400 * 1_000_000
PART_NAME = "part-{:03d}.parquet"


@dataclasses.dataclass(frozen=True, kw_only=True)
class GeneratorConfig:
    """What to generate: `users` distinct users over the `days` days ending on `end_date`."""

    users: int = 20_000
    days: int = 150
    end_date: datetime.date
    seed: int = 42

    def __post_init__(self) -> None:
        if self.users < 1 or self.days < 1:
            raise ValueError(f"users and days must be positive, got {self.users} and {self.days}")

    @property
    def start_date(self) -> datetime.date:
        return self.end_date - datetime.timedelta(days=self.days - 1)


@dataclasses.dataclass
class _Users:
    """Per-user traits (fixed) and state (updated day by day), indexed by user_id - 1."""

    signup_day: np.ndarray
    cancel_day: np.ndarray
    ramp_days: np.ndarray
    login_chance: np.ndarray
    sessions_per_login: np.ndarray
    session_median: np.ndarray
    failure_chance: np.ndarray
    ticket_chance: np.ndarray
    billing_offset: np.ndarray
    plan: np.ndarray
    dip_start: np.ndarray
    dip_days: np.ndarray
    dip_depth: np.ndarray
    retry_day: np.ndarray
    retries: np.ndarray


def _signup_days(config: GeneratorConfig, rng: np.random.Generator) -> np.ndarray:
    """Existing users signed up before day 0; the rest join evenly over the range.

    The existing share 1 / (1 + days * hazard) balances joiners against
    cancellations, so the live population stays near that share of `users`.
    """
    existing = rng.random(config.users) < 1.0 / (1.0 + config.days * DAILY_HAZARD)
    joined = rng.integers(1, max(config.days, 2), size=config.users)
    before = rng.integers(-720, 0, size=config.users)
    # Sorted so that user ids grow with signup, like an auto-increment key.
    return np.sort(np.where(existing, before, joined)).astype(np.int32)


def _init_users(config: GeneratorConfig, rng: np.random.Generator) -> _Users:
    """Draw each user's traits and their cancel day (possibly past the range)."""
    n = config.users
    signup_day = _signup_days(config, rng)
    engagement = rng.standard_normal(n)
    failure_chance = rng.beta(1.2, 20.0, size=n)
    plan = rng.choice(len(PLAN_TIERS), size=n, p=PLAN_SHARES).astype(np.int8)

    # Disengaged, often-failing, basic-plan users churn more: part of the signal
    # is visible in ordinary behaviour, not only in the final weeks.
    risk = np.exp(-0.35 * engagement + 6.0 * (failure_chance - 0.057)) * np.take(PLAN_HAZARD, plan)
    hazard = np.clip(DAILY_HAZARD * risk / risk.mean(), 1e-6, 0.5)
    cancel_day = np.maximum(signup_day, 0) + rng.geometric(hazard)
    ramp_days = rng.integers(*RAMP_DAYS, size=n)
    ramp_days[rng.random(n) < SILENT_CHURN_SHARE] = 0

    return _Users(
        signup_day=signup_day,
        cancel_day=np.minimum(cancel_day, np.iinfo(np.int32).max).astype(np.int32),
        ramp_days=ramp_days.astype(np.int16),
        login_chance=1.0 / (1.0 + np.exp(-(1.3 + 0.9 * engagement))),
        sessions_per_login=np.exp(0.8 + 0.3 * engagement + 0.2 * rng.standard_normal(n)),
        session_median=np.exp(np.log(480.0) + 0.25 * engagement + 0.4 * rng.standard_normal(n)),
        failure_chance=failure_chance,
        ticket_chance=0.004 * rng.lognormal(0.0, 0.5, size=n),
        billing_offset=(signup_day % BILLING_CYCLE_DAYS).astype(np.int16),
        plan=plan,
        dip_start=np.full(n, NO_DAY, dtype=np.int32),
        dip_days=np.ones(n, dtype=np.int16),
        dip_depth=np.zeros(n, dtype=np.float32),
        retry_day=np.full(n, NO_DAY, dtype=np.int32),
        retries=np.zeros(n, dtype=np.int8),
    )


def _fade(users: _Users, live: np.ndarray, day: int, rng: np.random.Generator) -> np.ndarray:
    """How far each live user has drifted from their normal self today, 0 to 1.

    Churners fade over their ramp before cancelling, on a concave curve so the
    change is already visible weeks ahead; anyone may also be in a temporary
    dip, which rises and falls back (a triangle over its length).
    """
    days_left = users.cancel_day[live] - day
    ramp = users.ramp_days[live]
    churn_fade = np.where(ramp > 0, np.clip(1.0 - days_left / np.maximum(ramp, 1), 0.0, 1.0) ** 0.7, 0.0)

    dip_phase = (day - users.dip_start[live]) / users.dip_days[live]
    starts = (dip_phase >= 1.0) & (rng.random(live.size) < DIP_DAILY_CHANCE)
    new = live[starts]
    users.dip_start[new] = day
    users.dip_days[new] = rng.integers(*DIP_DAYS, size=new.size)
    users.dip_depth[new] = rng.uniform(*DIP_DEPTH, size=new.size)
    dip_phase[starts] = 0.0
    in_dip = (dip_phase >= 0.0) & (dip_phase < 1.0)
    dip_fade = np.where(in_dip, users.dip_depth[live] * (1.0 - np.abs(2.0 * dip_phase - 1.0)), 0.0)
    return np.maximum(churn_fade, dip_fade)


def _change_plans(users: _Users, live: np.ndarray, fade: np.ndarray, rng: np.random.Generator) -> None:
    """A few users move one tier per day; fading users mostly downgrade."""
    moves = rng.random(live.size) < PLAN_CHANGE_DAILY_CHANCE * (1.0 + 3.0 * fade)
    down = rng.random(live.size) < 0.4 + 0.5 * fade
    step = np.where(down, -1, 1)[moves]
    movers = live[moves]
    users.plan[movers] = np.clip(users.plan[movers] + step, 0, len(PLAN_TIERS) - 1)


def _payments(
    users: _Users, live: np.ndarray, fade: np.ndarray, day: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Charge users on their billing day or retry day; schedule retries after failures."""
    due = ((day - users.billing_offset[live]) % BILLING_CYCLE_DAYS == 0) | (users.retry_day[live] == day)
    payers = live[due]
    failure_chance = np.minimum(users.failure_chance[payers] + 0.5 * fade[due], 0.95)
    failed = rng.random(payers.size) < failure_chance
    retry = failed & (users.retries[payers] < MAX_RETRIES)
    users.retry_day[payers] = np.where(retry, day + RETRY_AFTER_DAYS, NO_DAY)
    users.retries[payers] = np.where(retry, users.retries[payers] + 1, 0)
    return payers, np.where(failed, FAILED, SUCCEEDED).astype(np.int8)


def _day_events(users: _Users, day: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One day's events as parallel numpy columns (user index, type, session length, payment status).

    A fading user logs in less, holds fewer and shorter sessions, fails more
    payments and opens more tickets: the behaviour behind the contract features.
    """
    live = np.flatnonzero((users.signup_day <= day) & (users.cancel_day > day))
    fade = _fade(users, live, day, rng)
    _change_plans(users, live, fade, rng)

    # Everyone logs in on their signup day.
    logs_in = (rng.random(live.size) < users.login_chance[live] * (1.0 - 0.85 * fade)) | (
        users.signup_day[live] == day
    )
    logins = live[logs_in]
    session_counts = rng.poisson(users.sessions_per_login[logins] * (1.0 - 0.5 * fade[logs_in]))
    sessions = np.repeat(logins, session_counts)
    session_fade = np.repeat(fade[logs_in], session_counts)
    session_seconds = np.round(
        users.session_median[sessions]
        * (1.0 - 0.55 * session_fade)
        * rng.lognormal(0.0, 0.6, size=sessions.size),
        1,
    ) + 1.0

    payers, statuses = _payments(users, live, fade, day, rng)
    opens_ticket = rng.random(live.size) < users.ticket_chance[live] * (1.0 + 10.0 * fade)
    tickets = live[opens_ticket]
    cancels = np.flatnonzero(users.cancel_day == day)

    parts = [
        (logins, LOGIN),
        (sessions, SESSION),
        (payers, PAYMENT),
        (tickets, SUPPORT_TICKET),
        (cancels, CANCEL),
    ]
    user_index = np.concatenate([ids for ids, _ in parts])
    event_type = np.concatenate([np.full(ids.size, code, dtype=np.int8) for ids, code in parts])
    seconds = np.full(user_index.size, np.nan)
    seconds[event_type == SESSION] = session_seconds
    status = np.full(user_index.size, -1, dtype=np.int8)
    status[event_type == PAYMENT] = statuses
    return {
        "user_index": user_index,
        "event_type": event_type,
        "session_seconds": seconds,
        "payment_status": status,
    }


def _take_names(names: tuple[str, ...], codes: np.ndarray) -> pa.Array:
    """Map small integer codes to strings in Arrow (fast); negative codes become null."""
    indices = pa.array(codes.astype(np.int32), mask=codes < 0)
    return pc.take(pa.array(names, pa.string()), indices)


def _to_table(
    events: dict[str, np.ndarray], users: _Users, date: datetime.date, seed: int, rng: np.random.Generator
) -> pa.Table:
    """Give events timestamps within the day, order them by time, and build the contract table."""
    day_start = (date - datetime.date(1970, 1, 1)).days * MICROS_PER_DAY
    micros = rng.integers(0, MICROS_PER_DAY, size=events["user_index"].size)
    order = np.argsort(micros, kind="stable")
    user_index = events["user_index"][order]
    seconds = events["session_seconds"][order]

    row = pc.cast(pa.array(np.arange(order.size)), pa.string())
    event_id = pc.binary_join_element_wise(f"{seed}-{date:%Y%m%d}-", row, "")
    columns = [
        event_id,
        pa.array(user_index.astype(np.int64) + 1),
        _take_names(EVENT_TYPES, events["event_type"][order]),
        pa.array(day_start + micros[order], pa.timestamp("us", tz="UTC")),
        _take_names(PLAN_TIERS, users.plan[user_index]),
        pa.array(seconds, mask=np.isnan(seconds)),
        _take_names(PAYMENT_STATUSES, events["payment_status"][order]),
    ]
    return pa.Table.from_arrays(columns, schema=LANDED_SCHEMA)


def iter_daily_events(config: GeneratorConfig) -> Iterator[tuple[datetime.date, pa.Table]]:
    """Yield (date, table) for each day from end_date - days + 1 to end_date, in order."""
    rng = np.random.default_rng(config.seed)
    users = _init_users(config, rng)
    for day in range(config.days):
        date = config.start_date + datetime.timedelta(days=day)
        events = _day_events(users, day, rng)
        yield date, _to_table(events, users, date, config.seed, rng)


def part_key(date: datetime.date, part: int = 0) -> str:
    """The landing key of the generator's `part`-th file for `date`."""
    return landing_key(date, PART_NAME.format(part))


def parquet_bytes(table: pa.Table) -> bytes:
    """Serialize one table as a zstd parquet file in memory, for uploading."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def _split(table: pa.Table, parts: int) -> list[pa.Table]:
    """Cut a day into `parts` contiguous slices of near-equal size (some may be empty)."""
    bounds = np.linspace(0, table.num_rows, parts + 1).astype(int)
    return [table.slice(lo, hi - lo) for lo, hi in zip(bounds[:-1], bounds[1:])]


def write_local(config: GeneratorConfig, out_dir: Path, files_per_day: int = 1) -> list[Path]:
    """Write the landing layout under out_dir: events/raw/date=YYYY-MM-DD/part-000.parquet ... ; returns paths."""
    if files_per_day < 1:
        raise ValueError(f"files_per_day must be positive, got {files_per_day}")
    paths = []
    for date, table in iter_daily_events(config):
        for part, piece in enumerate(_split(table, files_per_day)):
            path = Path(out_dir) / part_key(date, part)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(piece, path, compression="zstd")
            paths.append(path)
    return paths
