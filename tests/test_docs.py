"""The documentation as a newcomer reads it: the README's Python example runs, every page the
README and the site link to exists, and the site's navigation holds every page."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
#: Pages made at build time (mkdocs_hooks.py), not written in docs/.
GENERATED = {"reference/cli.md"}


def test_the_readme_is_short_and_its_python_example_runs():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    example = re.findall(r"```python\n(.*?)```", readme, flags=re.S)[0]  # "In Python"
    assert len(example.strip().splitlines()) <= 10
    exec(compile(example, "README.md", "exec"), {})


def test_benchmarks_hold_todays_results_in_at_most_400_lines():
    # the rest is docs/benchmarks/history.md or git history (issue 45)
    assert len((ROOT / "BENCHMARKS.md").read_text().splitlines()) <= 400


def test_every_link_into_docs_resolves():
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+\.(?:md|png))", page.read_text()):
            if "://" in target or target in GENERATED:
                continue
            assert (page.parent / target).resolve().is_file(), f"{page.name} → {target}"


def test_the_site_navigation_holds_every_page():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def pages(nav):
        for item in nav:
            for value in item.values() if isinstance(item, dict) else [item]:
                yield from pages(value) if isinstance(value, list) else [value]

    listed = set(pages(config["nav"]))
    written = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert written <= listed, written - listed
    assert listed - written == GENERATED
