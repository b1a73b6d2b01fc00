"""The README's examples run as written: every `scratchlm ...` line of its bash blocks, and its Python
blocks, in order, in a fresh folder."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def commands() -> list[list[str]]:
    found = []
    for block in blocks("bash"):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("scratchlm "):
                found.append(shlex.split(line))
    return found


def test_readme_has_examples():
    assert len(commands()) >= 8 and blocks("python")


@pytest.mark.slow
def test_readme_examples_run(tmp_path):
    env = {**os.environ, "SCRATCHLM_CACHE": str(tmp_path / "cache")}
    for argv in commands():
        result = subprocess.run([sys.executable, "-m", "scratchlm", *argv[1:]], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{shlex.join(argv)}\n{result.stderr[-2000:]}"
    for code in blocks("python"):
        result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, f"{code}\n{result.stderr[-2000:]}"
