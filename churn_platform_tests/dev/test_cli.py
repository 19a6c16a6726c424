"""The `churn-platform` CLI: local chores land real objects, and refuse to run in production."""

import datetime as dt

import pytest

from churn_platform.dev.cli import main
from churn_platform.dev.s3 import s3_client
from churn_platform.events import parse_landing_key


@pytest.fixture
def cli_env(monkeypatch, tmp_path, s3_endpoint):
    monkeypatch.setenv("CHURN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    monkeypatch.delenv("CHURN_ENV", raising=False)
    return monkeypatch


def test_seed_lands_every_day_in_the_layout_and_says_how_far_it_is(cli_env, tmp_path, s3_endpoint, capsys):
    cli_env.setenv("CHURN_LANDING_BUCKET", "cli-seed")
    assert main(["seed", "--users", "50", "--days", "3", "--end-date", "2024-01-03"]) == 0
    progress = [line for line in capsys.readouterr().out.splitlines() if "days (through" in line]
    assert [line.split("] ", 1)[1].split(":")[0] for line in progress] == [
        f"landed {n}/3 days (through 2024-01-0{n})" for n in (1, 2, 3)]  # a line per tenth: here every day
    keys = [o["Key"] for o in s3_client(s3_endpoint).list_objects_v2(Bucket="cli-seed")["Contents"]]
    assert sorted(parse_landing_key(k) for k in keys) == ["2024-01-01", "2024-01-02", "2024-01-03"]
    assert (tmp_path / "data" / "start_date").read_text() == "2024-01-01"


@pytest.mark.parametrize("command", [["seed", "--users", "10", "--days", "1"], ["demo"], ["dev"]])
def test_local_chores_refuse_production(cli_env, tmp_path, s3_endpoint, capsys, command):
    cli_env.setenv("CHURN_ENV", "prod")
    cli_env.setenv("CHURN_LANDING_BUCKET", "prod-bucket-never-created")
    cli_env.setenv("CHURN_START_DATE", dt.date(2024, 1, 1).isoformat())
    assert main(command) == 2
    assert "refused: CHURN_ENV=prod" in capsys.readouterr().err
    buckets = {b["Name"] for b in s3_client(s3_endpoint).list_buckets().get("Buckets", [])}
    assert "prod-bucket-never-created" not in buckets
    assert not (tmp_path / "dagster_home" / "dagster.yaml").exists()
    assert not (tmp_path / "data").exists()
