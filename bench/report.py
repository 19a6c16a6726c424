"""The results as markdown: figures per step, ratios, and each target marked PASS or MISS."""

from __future__ import annotations

from dataclasses import dataclass

from bench.child import Measurement
from bench.run import ScaleResult
from bench.sensor import EventTickBench, SensorBench

PLATFORM_STEPS = ("ingest", "ingest_week", "features_prev", "features", "model")
# The weekly increment: K's 7 new days ingested, K's features and labels, K's model, promotion, scores.
INCREMENT_STEPS = ("ingest_week", "features", "model")
RSS_LIMIT_MB = 2048
L_RSS_LIMIT_MB = 24 * 1024
FEATURES_RATIO_LIMIT = 1.0
INGEST_RATIO_LIMIT = 2.0
INCREMENT_SPEEDUP = 3.0
INCREMENT_MEMORY_SHARE = 0.25
TRAINING_SPEEDUP = 10.0
AUC_TOLERANCE = 0.005
SENSOR_SECONDS_LIMIT = 2.0


@dataclass(frozen=True)
class Target:
    name: str
    measured: str
    limit: str
    passed: bool | None  # None: could not be measured

    def row(self) -> str:
        verdict = {True: "PASS", False: "MISS", None: "n/a"}[self.passed]
        return f"| {self.name} | {self.measured} | {self.limit} | **{verdict}** |"


def _steps(m: Measurement) -> str:
    return ", ".join(f"{step} {seconds:.2f} s" for step, seconds in m.step_seconds.items())


def _metadata(details: dict, asset: str, key: str):
    return details.get("metadata", {}).get(asset, {}).get(key)


def _notes(name: str, m: Measurement) -> str:
    d = m.details
    name = name.removeprefix("spark_")
    load = f"imports+definitions {d['load_seconds']:.2f} s" if "load_seconds" in d else ""
    match name:
        case "noop" | "noop_range":
            return load
        case "ingest" | "ingest_week":
            return f"{load}; steps: {_steps(m)}; {_metadata(d, 'raw_events', 'rows'):,} rows"
        case "s3_download":
            return f"{d['files']} files, {d['bytes'] / 1e6:,.0f} MB"
        case "floor_ingest":
            return f"{d['rows']:,} rows"
        case "features_prev":
            return f"{load}; steps: {_steps(m)}"
        case "features":
            return f"{load}; steps: {_steps(m)}; population {_metadata(d, 'user_features', 'population'):,}"
        case "floor_features":
            return f"{d['feature_rows']:,} feature rows, {d['label_rows']:,} label rows"
        case "model":
            evaluation = _metadata(d, "churn_model", "evaluation_seconds")
            return (f"{load}; steps: {_steps(m)}; AUC {_metadata(d, 'churn_model', 'roc_auc'):.4f}, "
                    f"fit {_metadata(d, 'churn_model', 'fit_seconds'):.2f} s"
                    + ("" if evaluation is None else f", holdout evaluation {evaluation:.2f} s"))
        case "estimators":
            return (f"{d['rows']:,} rows, platform split: HGB fit {d['hgb_fit_seconds']:.2f} s, AUC "
                    f"{d['hgb_auc']:.4f}; GBC300 fit {d['gbc300_fit_seconds']:.2f} s, AUC {d['gbc300_auc']:.4f} "
                    f"(fits: median of {len(d['hgb_fit_seconds_all'])} each); baseline split: HGB AUC "
                    f"{d['hgb_seed_split_auc']:.4f}, GBC300 AUC {d['gbc300_seed_split_auc']:.4f}")
        case "baseline_pandas":
            return (f"read {d['read_seconds']:.2f} s, features+labels {d['features_labels_seconds']:.2f} s, "
                    f"GBC300 fit {d['fit_seconds']:.2f} s; {d['rows']:,} rows, AUC {d['roc_auc']:.4f} (baseline split)")
    return ""


LABELS = {
    "noop": "Dagster no-op run (one weekly asset)",
    "noop_range": "Dagster no-op range run (ingest_job's shape: 2 daily assets, all days)",
    "ingest": "platform: ingest_job, all days, one run",
    "ingest_week": "platform: ingest_job, K's 7 days, one run (the weekly increment's ingest)",
    "s3_download": "reference: S3 GET of every file (boto3, sequential)",
    "floor_ingest": "floor: DuckDB read+write of every file",
    "features_prev": "platform: user_features K-4 (setup for labels)",
    "features": "platform: user_features+churn_labels K",
    "spark_ingest": "Spark engine: ingest_job, all days, one run",
    "spark_features_prev": "Spark engine: user_features K-4 (setup for labels)",
    "spark_features": "Spark engine: user_features+churn_labels K",
    "floor_features": "floor: one DuckDB scan -> features A + labels A-28",
    "model": "platform: churn_model+promotion_decision+churn_scores K",
    "estimators": "training: HGB default vs GBC300, same split",
    "baseline_pandas": "baseline: pandas read + features/labels + GBC300",
}


def _figures(result: ScaleResult) -> list[str]:
    lines = [
        "| step | runs | measured s (median) | process s (median) | peak RSS MB (max) "
        "| largest subprocess MB (dbt) | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, label in LABELS.items():
        m = result.measurements.get(name)
        if m is None:
            if name in result.failures:
                lines.append(f"| {label} | - | - | - | - | - | {result.failures[name]} |")
            continue
        sub = f"{m.subprocess_rss_mb:,.0f}" if m.subprocess_rss_mb else "-"
        lines.append(f"| {label} | {len(m.runs)} | {m.seconds:.2f} | {m.process_seconds:.2f} | "
                     f"{m.peak_rss_mb:,.0f} | {sub} | {_notes(name, m)} |")
    return lines


def _ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.1f}x" if denominator else "n/a"


def _ratios(result: ScaleResult) -> list[str]:
    m = result.measurements
    lines = ["| ratio | value | from |", "|---|---|---|"]
    for step, floor, noop in (("ingest", "floor_ingest", "noop_range"), ("features", "floor_features", "noop")):
        if not all(k in m for k in (step, floor, noop)):
            continue
        p, f, n = m[step], m[floor], m[noop]
        lines.append(f"| platform {step} / ({floor} + {noop}) | {_ratio(p.seconds, f.seconds + n.seconds)} "
                     f"| {p.seconds:.2f} / ({f.seconds:.2f} + {n.seconds:.2f}) s |")
        lines.append(f"| ... the same with process walls | "
                     f"{_ratio(p.process_seconds, f.process_seconds + n.process_seconds)} | "
                     f"{p.process_seconds:.2f} / ({f.process_seconds:.2f} + {n.process_seconds:.2f}) s |")
    if "baseline_pandas" in m and "features" in m:
        baseline = m["baseline_pandas"].details
        baseline_features = baseline["read_seconds"] + baseline["features_labels_seconds"]
        platform = m["features"].seconds
        lines.append(f"| baseline read+features+labels / platform features+labels K | "
                     f"{_ratio(baseline_features, platform)} | {baseline_features:.2f} / {platform:.2f} s |")
        end_to_end = ("ingest", "features_prev", "features", "model")
        if all(s in m for s in end_to_end):
            platform = sum(m[s].process_seconds for s in end_to_end)
            lines.append(f"| baseline end to end / platform end to end (ingest + K-4 + K + model, process walls) | "
                         f"{_ratio(m['baseline_pandas'].process_seconds, platform)} | "
                         f"{m['baseline_pandas'].process_seconds:.2f} / {platform:.2f} s |")
    for step in ("ingest", "features"):
        if step in m and f"spark_{step}" in m:
            spark, duck = m[f"spark_{step}"], m[step]
            lines.append(f"| Spark engine {step} / DuckDB engine {step} | {_ratio(spark.seconds, duck.seconds)} "
                         f"| {spark.seconds:.2f} / {duck.seconds:.2f} s |")
    if "estimators" in m:
        d = m["estimators"].details
        lines.append(f"| baseline GBC300 fit / platform HGB fit | {_ratio(d['gbc300_fit_seconds'], d['hgb_fit_seconds'])} "
                     f"| {d['gbc300_fit_seconds']:.2f} / {d['hgb_fit_seconds']:.2f} s |")
    return lines


def _targets(result: ScaleResult) -> list[Target]:
    m = result.measurements
    targets = []
    if all(k in m for k in ("features", "floor_features", "noop")):
        floor = m["floor_features"].seconds + m["noop"].seconds
        ratio = m["features"].seconds / floor
        targets.append(Target(f"one weekly features+labels partition <= {FEATURES_RATIO_LIMIT:g} x "
                              "(DuckDB scan of the raw files + Dagster no-op run)",
                              f"{ratio:.2f}x ({m['features'].seconds:.2f} s vs {floor:.2f} s)",
                              f"<= {FEATURES_RATIO_LIMIT:g}x", ratio <= FEATURES_RATIO_LIMIT))
    if all(k in m for k in (*INCREMENT_STEPS, "baseline_pandas")):
        targets += _increment_targets(m)
    steps = {s: m[s] for s in PLATFORM_STEPS if s in m}
    if steps:
        worst = max(steps, key=lambda s: steps[s].peak_rss_mb)
        limit = L_RSS_LIMIT_MB if result.scale.name == "L" else RSS_LIMIT_MB
        complete = len(steps) == len(PLATFORM_STEPS)
        targets.append(Target(f"peak RSS of any platform step{'' if complete else ' (not all steps ran)'}",
                              f"{steps[worst].peak_rss_mb:,.0f} MB ({worst})", f"<= {limit:,} MB",
                              complete and steps[worst].peak_rss_mb <= limit))
    if "estimators" in m:
        d = m["estimators"].details
        speedup = d["gbc300_fit_seconds"] / d["hgb_fit_seconds"]
        delta = d["hgb_auc"] - d["gbc300_auc"]
        targets.append(Target("training >= 10x faster than the baseline GBC300 (fit)", f"{speedup:.1f}x",
                              f">= {TRAINING_SPEEDUP:g}x", speedup >= TRAINING_SPEEDUP))
        seed_split_delta = d["hgb_seed_split_auc"] - d["gbc300_seed_split_auc"]
        targets.append(Target("... at AUC within 0.005 of GBC300 (HGB - GBC300, platform split)",
                              f"{delta:+.4f} (baseline split: {seed_split_delta:+.4f})",
                              f">= -{AUC_TOLERANCE}", delta >= -AUC_TOLERANCE))
    if all(k in m for k in ("ingest", "floor_ingest", "noop_range")):
        floor = m["floor_ingest"].seconds + m["noop_range"].seconds
        ratio = m["ingest"].seconds / floor
        targets.append(Target(f"ingest of {result.scale.days} days in one run <= {INGEST_RATIO_LIMIT:g} x "
                              "(DuckDB read+write of the files + Dagster no-op range run)",
                              f"{ratio:.2f}x ({m['ingest'].seconds:.2f} s vs {floor:.2f} s)",
                              f"<= {INGEST_RATIO_LIMIT:g}x", ratio <= INGEST_RATIO_LIMIT))
    spark_steps = [m[s] for s in ("spark_ingest", "spark_features") if s in m]
    if spark_steps or any(s.startswith("spark_") for s in result.failures):
        worst = max((x.peak_rss_mb + x.subprocess_rss_mb for x in spark_steps), default=0.0)
        targets.append(Target("Spark engine: ingest and weekly run complete within the machine's 24 GB "
                              "(run worker + largest subprocess, the JVM)",
                              f"{len(spark_steps)} of 2 ran; peak {worst:,.0f} MB", f"<= {L_RSS_LIMIT_MB:,} MB",
                              len(spark_steps) == 2 and worst <= L_RSS_LIMIT_MB))
    if result.scale.name == "L" and ("ingest" in m or "ingest" in result.failures):  # not on --spark-only
        pandas = "completed" if "baseline_pandas" in m else f"did not: {result.failures.get('baseline_pandas', '?')}"
        targets.append(Target("scale L completes within 24 GB where the pandas path cannot",
                              f"platform steps {'all ran' if len(steps) == len(PLATFORM_STEPS) else 'did not all run'}"
                              f"; pandas {pandas}", "platform completes, pandas fails",
                              len(steps) == len(PLATFORM_STEPS) and "baseline_pandas" not in m))
    return targets


def increment(m: dict[str, Measurement]) -> tuple[float, float]:
    """The weekly increment's seconds (its runs' measured times) and peak RSS (MB, any run or its dbt)."""
    steps = [m[s] for s in INCREMENT_STEPS]
    return sum(x.seconds for x in steps), max(x.peak_rss_mb for x in steps)


def _increment_targets(m: dict[str, Measurement]) -> list[Target]:
    """The platform's weekly increment against the pandas baseline's one week (read, features and
    labels, GradientBoosting fit): the same work for the week that matters to a retention team."""
    seconds, rss = increment(m)
    baseline = m["baseline_pandas"]
    d = baseline.details
    baseline_seconds = d["read_seconds"] + d["features_labels_seconds"] + d["fit_seconds"]
    speedup = baseline_seconds / seconds
    share = rss / baseline.peak_rss_mb
    return [
        Target(f"weekly increment (K's 7 days ingested, features, labels, train, promote, score) >= "
               f"{INCREMENT_SPEEDUP:g} x faster than the pandas baseline's week",
               f"{speedup:.1f}x ({seconds:.2f} s vs {baseline_seconds:.2f} s)", f">= {INCREMENT_SPEEDUP:g}x",
               speedup >= INCREMENT_SPEEDUP),
        Target(f"... at <= {INCREMENT_MEMORY_SHARE:g} of its memory (peak RSS)",
               f"{share:.2f} ({rss:,.0f} MB vs {baseline.peak_rss_mb:,.0f} MB)", f"<= {INCREMENT_MEMORY_SHARE:g}",
               share <= INCREMENT_MEMORY_SHARE),
    ]


def _diffs(result: ScaleResult) -> list[str]:
    if not result.diffs:
        return []
    lines = ["", "Same features and labels as the platform's tables (rows differing per column):", "",
             "| compared with the platform | platform rows | other rows | only platform | only other | "
             "differing values |", "|---|---|---|---|---|---|"]
    for name, d in result.diffs.items():
        values = {k: v for k, v in d.items()
                  if k not in ("platform_rows", "other_rows", "only_platform", "only_other") and v}
        lines.append(f"| {name} | {d['platform_rows']:,} | {d['other_rows']:,} | {d['only_platform']:,} | "
                     f"{d['only_other']:,} | {values or 'none'} |")
    return lines


def scale_section(result: ScaleResult) -> tuple[str, list[Target]]:
    s, data = result.scale, result.data
    targets = _targets(result)
    lines = [
        f"## Scale {s.name}: {s.users:,} users, {s.days} days ({s.start_date}..{s.as_of})",
        "",
        f"{data.events:,} events in {data.files} files ({data.bytes / 1e6:,.0f} MB zstd parquet); "
        f"generation {data.generate_seconds:.1f} s, landing in S3 {data.land_seconds:.1f} s. "
        f"Measured weekly partition K = {s.week} (as-of {s.as_of}; labels and training at {s.label_as_of}).",
        "",
        *_figures(result),
        "",
        *_ratios(result),
        "",
        "| target | measured | limit | result |",
        "|---|---|---|---|",
        *[t.row() for t in targets],
        *_diffs(result),
    ]
    return "\n".join(lines), targets


def readme_section(result: ScaleResult) -> str:
    """The scale's steps and ratios, for the README."""
    s, data = result.scale, result.data
    return "\n".join([f"Scale {s.name}: {s.users:,} users, {s.days} days, {data.events:,} events "
                      f"({data.bytes / 1e6:,.0f} MB of parquet); weekly partition K = {s.week}.", "",
                      *_figures(result), "", *_ratios(result)])


def sensor_section(bench: SensorBench) -> tuple[str, list[Target]]:
    limits = bench.limits
    bounded = bench.max_list_calls <= limits.max_list_calls
    targets = [
        Target("sensor tick: list calls bounded", f"max {bench.max_list_calls} per tick",
               f"<= {limits.max_list_calls} (TickLimits)", bounded),
        Target("sensor tick < 2 s (over HTTP to moto)",
               f"max {bench.max_seconds:.2f} s, median {bench.median_seconds:.2f} s",
               f"< {SENSOR_SECONDS_LIMIT:g} s", bench.max_seconds < SENSOR_SECONDS_LIMIT),
        Target("sensor tick < 2 s, plan_tick's own time (list-call time excluded)",
               f"max {bench.max_own_seconds:.3f} s", f"< {SENSOR_SECONDS_LIMIT:g} s",
               bench.max_own_seconds < SENSOR_SECONDS_LIMIT),
    ]
    rows = [f"| {kind} {i + 1} | {t.list_calls} | {t.seconds:.2f} | {t.list_seconds:.2f} | {t.own_seconds:.3f} | "
            f"{len(t.requested)} |"
            for kind, ticks in (("idle", bench.idle), ("after new keys", bench.catch_up))
            for i, t in enumerate(ticks)]
    lines = [
        f"## S3 landing sensor: {bench.keys:,} keys, {bench.new_keys} new ones on {bench.changed_dates} dates",
        "",
        f"Default TickLimits (max {limits.max_list_calls} list calls, {limits.max_run_requests} run requests, "
        f"{limits.page_size} keys per call). A list call to moto costs {bench.seconds_per_list_call:.3f} s here "
        f"(moto sorts the whole bucket on every call). {len(bench.catch_up)} tick(s) until every changed date "
        f"was requested.",
        "",
        "| tick | list calls | seconds | in list calls | plan_tick own s | dates requested |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "| target | measured | limit | result |",
        "|---|---|---|---|",
        *[t.row() for t in targets],
    ]
    return "\n".join(lines), targets


def event_sensor_section(bench: EventTickBench) -> tuple[str, list[Target]]:
    targets = [
        Target("event-mode tick < 1 s, 100k keys, 100 new files", f"{bench.seconds:.2f} s",
               "< 1 s", bench.seconds < 1),
        Target("event-mode API calls follow the new files, not the bucket",
               f"{bench.list_calls} list + {bench.receive_calls} receive calls for {bench.changed_dates} dates",
               f"<= {bench.changed_dates + 1} list calls", bench.list_calls <= bench.changed_dates + 1),
    ]
    lines = [
        f"## S3 landing sensor, event mode: {bench.keys:,} keys, {bench.new_keys} new files on "
        f"{bench.changed_dates} dates",
        "",
        f"One tick read {bench.new_keys} notices ({bench.receive_calls} receive calls), listed "
        f"{bench.list_calls - 1} notified dates and the hot range ({bench.list_calls} list calls) and "
        f"requested {bench.requested} dates in {bench.seconds:.2f} s. The next tick deleted the messages and "
        f"found the queue empty: {bench.next_calls} calls, {bench.next_seconds:.2f} s. (The listing sweep's "
        "cost on the same bucket is the section above.)",
        "",
        "| target | measured | limit | result |",
        "|---|---|---|---|",
        *[t.row() for t in targets],
    ]
    return "\n".join(lines), targets
