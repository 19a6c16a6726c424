"""The README's performance blocks are the bench's output: the bench finds and replaces them."""

import pytest

from bench.readme import begin, end, replace_block, update
from churn_platform.settings import PROJECT_ROOT


def _readme(m: str, l: str) -> str:
    return f"# Title\n\n{begin('M')}\n{m}\n{end('M')}\n\nProse.\n\n{begin('L')}\n{l}\n{end('L')}\n"


def test_a_run_replaces_the_blocks_it_measured_and_keeps_the_rest(tmp_path):
    path = tmp_path / "README.md"
    path.write_text(_readme("old M", "old L"))
    update(path, "From `run.md`:", {"M": (["| t | 1.0x | <= 1x | **PASS** |"], "| step | s |")})
    assert path.read_text() == _readme(
        "From `run.md`:\n\n| target | measured | limit | result |\n|---|---|---|---|\n| t | 1.0x | <= 1x | **PASS** |"
        "\n\n| step | s |", "old L")
    assert replace_block(path.read_text(), "L", "old L") == path.read_text()  # idempotent


def test_a_readme_without_the_block_is_an_error_not_a_silent_no_op():
    with pytest.raises(ValueError, match="no generated bench block 'S'"):
        replace_block(_readme("m", "l"), "S", "| table |")


def test_the_projects_readme_carries_a_block_per_measured_scale_and_the_sensor():
    readme = (PROJECT_ROOT / "README.md").read_text()
    for name in ("M", "L", "sensor"):
        assert readme.count(begin(name)) == 1 and readme.count(end(name)) == 1
        assert readme.index(begin(name)) < readme.index(end(name))
