"""docs/concepts.md stays true: every file it names exists, and every name it gives after a file is defined there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONCEPTS = ROOT / "docs" / "concepts.md"


def references() -> list[tuple[str, list[str]]]:
    """(file, [names]) for each `path.py`: `name`, `Class.method` ... in the code column of the tables."""
    found = []
    for line in CONCEPTS.read_text().splitlines():
        if not line.startswith("|"):
            continue
        for match in re.finditer(r"`((?:src|tests|bench)/[\w/]+\.py)`(?::\s*((?:`[\w.]+`(?: \([^)]*\))?,?\s*)+))?", line):
            names = re.findall(r"`([\w.]+)`", match[2] or "")
            found.append((match[1], names))
    return found


def test_concepts_names_files():
    assert len(references()) >= 40


@pytest.mark.parametrize(("path", "names"), references(), ids=lambda v: v if isinstance(v, str) else ",".join(v))
def test_every_reference_exists(path: str, names: list[str]):
    source = (ROOT / path).read_text()
    for name in names:
        last = name.split(".")[-1]
        assert re.search(rf"\b(def|class)\s+{last}\b|\b{last}\s*[:=]", source), f"{path} has no {name}"


def test_bench_readme_describes_every_benchmark():
    """bench/README.md has a `### \\`NAME\\`` section for each benchmark module's NAME, and none for a name
    no module has."""
    names = {m[1] for path in (ROOT / "bench").glob("*.py")
             if (m := re.search(r'^NAME = "([\w-]+)"$', path.read_text(), re.MULTILINE))}
    sections = set(re.findall(r"^### `([\w-]+)`", (ROOT / "bench" / "README.md").read_text(), re.MULTILINE))
    assert len(names) >= 10 and names == sections, f"without a section: {names - sections}; stale: {sections - names}"
