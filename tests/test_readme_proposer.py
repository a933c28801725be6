"""The README's example search strategy runs, and keeps the proposer contract."""

from __future__ import annotations

import re
from pathlib import Path

from edgetran.search.proposers import Proposer
from edgetran.testing import check_proposer

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_proposer_example() -> str:
    """The Python block of the README's "Add your own …" section."""
    section = README.read_text().split("## Add your own …", 1)[1].split("\n## ", 1)[0]
    (example,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return example


def test_the_readme_example_proposer_passes_check_proposer():
    example = readme_proposer_example()
    assert len(example.strip().splitlines()) <= 25
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)  # runs its own check_proposer
    proposer = namespace["NearBest"]
    assert issubclass(proposer, Proposer)
    check_proposer(proposer, seed=1)
