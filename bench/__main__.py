"""`python -m bench [S] [M] [L]`: benchmark the platform at each scale (default S and M)."""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib.metadata
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message=".*is currently in beta")

from churn_platform.dev.local_s3 import local_s3_server  # noqa: E402
from churn_platform.dev.s3 import s3_client  # noqa: E402
from churn_platform.settings import PROJECT_ROOT  # noqa: E402

from bench import readme, report, sensor  # noqa: E402
from bench.run import ScaleBench, child_env, prepare  # noqa: E402
from bench.scales import DEFAULT_DAYS, DEFAULT_SCALES, USERS, Scale  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
VERSIONED = ("dagster", "dagster-dbt", "dbt-core", "dbt-duckdb", "duckdb", "scikit-learn", "pandas", "moto",
             "pyspark", "dbt-spark")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("scales", nargs="*", type=str.upper, metavar="SCALE",
                        help="S: 20k users, M: 100k, L: 1M (default: S M)")
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS, help="days of events (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measured step; times are medians")
    parser.add_argument("--pandas-memory-gib", type=float, default=16.0,
                        help="address-space cap (RLIMIT_AS) of the pandas child (default %(default)s)")
    parser.add_argument("--no-pandas", action="store_true", help="skip the pandas + GradientBoosting baseline")
    parser.add_argument("--no-sensor", action="store_true", help="skip the sensor tick benchmark")
    parser.add_argument("--no-spark", action="store_true",
                        help="skip the Spark engine's ingest and features runs (CHURN_ENGINE=spark)")
    parser.add_argument("--spark-only", action="store_true",
                        help="only the Spark engine's ingest and features runs (e.g. scale L on Spark)")
    parser.add_argument("--ingest-only", action="store_true",
                        help="only the ingest runs and their floors (no features, model, pandas or Spark)")
    parser.add_argument("--profile", action="store_true",
                        help="run each platform step once more under cProfile (implies --keep)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (data, logs, warehouse)")
    parser.add_argument("--readme", action="store_true",
                        help="write the run's targets and step tables into README.md (Performance)")
    return parser


def _machine() -> str:
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    load = "/".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores, {memory_gib:.1f} GiB RAM, load average {load}"


def code_fingerprint() -> str:
    """Commit plus a digest of the platform's code as it is on disk (others edit it while we run)."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True).stdout.strip() or "?"
    digest = hashlib.sha256()
    for folder, pattern in (("churn_platform", "*.py"), ("dbt_project", "*.sql"), ("dbt_project", "*.yml")):
        for path in sorted((PROJECT_ROOT / folder).rglob(pattern)):
            if not {"target", "logs"} & set(path.parts):
                digest.update(str(path.relative_to(PROJECT_ROOT)).encode() + path.read_bytes())
    return f"{commit}+{digest.hexdigest()[:12]}"


def stale_manifest_note() -> str:
    """`make install` re-parses dbt when a source is newer than the manifest; say if it is due."""
    manifest = PROJECT_ROOT / "dbt_project" / "target" / "manifest.json"
    sources = [p for p in (PROJECT_ROOT / "dbt_project").rglob("*") if p.suffix in (".sql", ".yml")
               and not {"target", "logs"} & set(p.parts)]
    if not manifest.exists():
        return " dbt manifest missing: run `make install`."
    newer = [p.name for p in sources if p.stat().st_mtime > manifest.stat().st_mtime]
    return f" dbt manifest older than {', '.join(sorted(newer))} (`make install` re-parses)." if newer else ""


def header(argv: list[str], args, started: dt.datetime, machine_at_start: str, code: tuple[str, str]) -> str:
    versions = ", ".join(f"{name} {importlib.metadata.version(name)}" for name in VERSIONED)
    changed = "" if code[0] == code[1] else f" -> {code[1]} (CHANGED DURING THE RUN: figures mix versions)"
    return "\n".join([
        f"# churn-platform bench, {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `python -m bench {' '.join(argv)}`".rstrip() + f" (repeats {args.repeats})",
        f"Code: commit+working-tree digest of churn_platform/ and dbt_project/ {code[0]}{changed}."
        + stale_manifest_note(),
        f"Machine: {platform.node()}; at start {machine_at_start}; at end {_machine()}.",
        f"Python {platform.python_version()}; {versions}.",
        "",
        f"Shared machine (other engineers run tests at the same time): times are medians of {args.repeats} runs,",
        "each in a fresh child process (runs = 1 where marked), and can be noisy. \"measured s\" is the operation",
        "inside the child (for Dagster: execute_in_process on a DAGSTER_HOME instance); \"process s\" is spawn to",
        "exit (interpreter, imports, definitions, the operation). Peak RSS is VmHWM, the max over runs of",
        "max(child, each of its subprocesses): the run's process or dbt, whichever is larger.",
    ])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    unknown = sorted(set(args.scales) - set(USERS))
    if unknown:
        parser.error(f"unknown scale(s) {unknown}: choose from {sorted(USERS)}")
    scales = list(dict.fromkeys(args.scales or DEFAULT_SCALES))
    args.keep = args.keep or args.profile
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))  # clean up on kill
    started = dt.datetime.now(dt.timezone.utc)
    machine_at_start = _machine()
    code_at_start = code_fingerprint()
    root = Path(tempfile.mkdtemp(prefix="churn-bench-"))
    print(f"bench state in {root}", flush=True)
    sections, summary, readme_blocks = [], [], {}
    try:
        with local_s3_server() as endpoint:
            client = s3_client(endpoint)
            for name in scales:
                scale = Scale(name, USERS[name], args.days)
                scale_dir = root / name
                bucket = f"bench-{name.lower()}"
                env = child_env(scale_dir, endpoint, bucket, scale)
                prepare(scale_dir, env)
                bench = ScaleBench(scale, scale_dir, env, args.repeats, args.profile,
                                   spark=not args.no_spark, spark_only=args.spark_only,
                                   ingest_only=args.ingest_only)
                result = bench.run(client, bucket, args.pandas_memory_gib, run_pandas=not args.no_pandas)
                text, targets = report.scale_section(result)
                sections.append(text)
                readme_blocks[name] = ([t.row() for t in targets], report.readme_section(result))
                summary += [(name, t) for t in targets]
            if not args.no_sensor:
                print(f"[sensor] loading {sensor.KEYS:,} keys and ticking ...", flush=True)
                text, targets = report.sensor_section(sensor.run(client))
                sections.append(text)
                summary += [("-", t) for t in targets]
                event_text, event_targets = report.event_sensor_section(sensor.run_event_mode(client, endpoint))
                sections.append(event_text)
                summary += [("-", t) for t in event_targets]
                readme_blocks["sensor"] = ([t.row() for t in targets + event_targets], "")
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    targets_table = ["## Targets", "", "| scale | target | measured | limit | result |", "|---|---|---|---|---|",
                     *[f"| {scale} {t.row()}" for scale, t in summary]]
    code = (code_at_start, code_fingerprint())
    document = "\n\n".join([header(argv, args, started, machine_at_start, code), "\n".join(targets_table),
                             *sections]) + "\n"
    print("\n" + document)
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{started:%Y-%m-%d}.md"
    if path.exists():  # a second run that day keeps the first
        path = RESULTS_DIR / f"{started:%Y-%m-%d-%H%M}.md"
    path.write_text(document)
    print(f"written {path}")
    if args.readme:
        source = (f"From `{path.relative_to(PROJECT_ROOT)}` (`python -m bench {' '.join(argv)}`, code {code[0]}, "
                  f"{started:%Y-%m-%d}; medians of {args.repeats}):")
        readme.update(PROJECT_ROOT / "README.md", source, readme_blocks)
        print("README.md: performance figures replaced by this run's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
