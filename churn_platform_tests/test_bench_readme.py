"""The README's performance block is the bench's output: the bench can find and replace it."""

import pytest

from bench.readme import BEGIN, END, replace_block
from churn_platform.settings import PROJECT_ROOT


def test_the_block_is_replaced_and_everything_around_it_kept():
    readme = f"# Title\n\n## Performance\n\n{BEGIN}\nold table\n{END}\n\nWhere the time goes.\n"
    updated = replace_block(readme, "| new | table |\n")
    assert updated == f"# Title\n\n## Performance\n\n{BEGIN}\n| new | table |\n{END}\n\nWhere the time goes.\n"
    assert replace_block(updated, "| new | table |") == updated  # idempotent


def test_a_readme_without_the_block_is_an_error_not_a_silent_no_op():
    with pytest.raises(ValueError, match="no generated bench block"):
        replace_block("# Title\n", "| table |")


def test_the_projects_readme_carries_one_generated_block():
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert readme.count(BEGIN) == 1 and readme.count(END) == 1 and readme.index(BEGIN) < readme.index(END)
