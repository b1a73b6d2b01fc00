"""The README's examples run as written: every `scratchlm ...` line of its bash blocks, typed into bash as a
reader types it after `source .venv/bin/activate` (the command found on the PATH, not `python -m`), and its
Python blocks, in order, in a fresh folder."""

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


SHARED_DATA = README.parent.parent / "shared" / "data"
SHORT_TIME = "5s"  # every `--time` budget of the README, cut to this: the commands are checked, not the models


def commands() -> list[list[str]]:
    """Each `scratchlm` command of the bash blocks: continuation lines joined, comments and `> file` dropped."""
    found = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0].split(">", 1)[0].strip()
            if line.startswith("scratchlm "):
                found.append(shlex.split(line))
    return found


def runnable(argv: list[str]) -> list[str]:
    """`argv` as the test runs it: the shared data by its absolute path, and a short time budget."""
    argv = [str(SHARED_DATA / a.removeprefix("../shared/data/")) if a.startswith("../shared/data/") else a for a in argv]
    return [SHORT_TIME if before == "--time" else a for before, a in zip(["", *argv[:-1]], argv, strict=True)]


def test_readme_has_examples():
    assert len(commands()) >= 8 and blocks("python")


def test_the_readme_says_where_its_command_is():
    """A reader who typed the two set-up commands met `scratchlm: command not found` at the next one."""
    text = README.read_text()
    setup = text[text.index("## Set-up"):text.index("## Learn")]
    assert "source .venv/bin/activate" in setup
    assert (Path(sys.executable).parent / "scratchlm").exists()  # what activate puts on the PATH
    assert "activate" in (README.parent / "Makefile").read_text()  # the demo's last line says it too


def activated(env: dict[str, str]) -> dict[str, str]:
    """The environment after `source .venv/bin/activate`: this interpreter's bin folder first on the PATH."""
    return {**env, "VIRTUAL_ENV": str(Path(sys.executable).parent.parent),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"}


@pytest.mark.slow
def test_readme_examples_run(tmp_path):
    if any("../shared/data/" in arg for argv in commands() for arg in argv) and not SHARED_DATA.is_dir():
        pytest.skip(f"the README's examples read {SHARED_DATA}, which is absent")
    env = activated({**os.environ, "SCRATCHLM_CACHE": str(tmp_path / "cache")})
    for argv in map(runnable, commands()):
        result = subprocess.run(["bash", "-c", shlex.join(argv)], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, f"{shlex.join(argv)}\n{result.stderr[-2000:]}"
    for code in blocks("python"):
        result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, f"{code}\n{result.stderr[-2000:]}"
