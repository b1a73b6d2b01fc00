"""The notebooks of docs/notebooks/: a learner's path through the library, kept working.

Every *.ipynb in the folder is checked, so a new notebook needs no change here. The default run
checks that each parses, was stored executed with small outputs, and that its code names only the
public API (`scratchlm.__all__`): a notebook is read as an example of how to use the library, so
it must not reach into a private module. The slow run (`make test-slow`) executes each one top to
bottom in a fresh kernel, in a temporary folder, and fails on the first cell that raises.
"""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import scratchlm

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "docs" / "notebooks").glob("*.ipynb"))
SHARED_DATA = ROOT.parent / "shared" / "data"  # the public data sets, where the checkout has them beside it
NOTEBOOK_SECONDS = 900  # each notebook is written to run in a few minutes on 2 CPU cores
MAX_BYTES = 2_000_000  # a stored notebook, outputs included: read on the web, it must load quickly
MAX_IMAGE_BYTES = 250_000  # one figure, base64 in the JSON


def code_of(cell: dict) -> str:
    """A code cell's Python: IPython's magics and shell lines (% and !) taken out."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in cell["source"].splitlines())


def private_names(source: str) -> list[str]:
    """The names of scratchlm the code uses that scratchlm.__all__ does not export."""
    public = set(scratchlm.__all__)
    tree = ast.parse(source)
    aliases = {"scratchlm"}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for name in node.names:
                if name.name.startswith("scratchlm."):
                    found.append(f"import {name.name}")
                elif name.name == "scratchlm":
                    aliases.add(name.asname or "scratchlm")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "scratchlm":
            if node.module != "scratchlm":
                found.append(f"from {node.module} import ...")
            else:
                found += [f"from scratchlm import {n.name}" for n in node.names if n.name not in public]
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr not in public):
            found.append(f"{node.value.id}.{node.attr}")
    return found


def read(path: Path):
    import nbformat

    return nbformat.read(path, as_version=4)


def test_notebooks_exist():
    assert len(NOTEBOOKS) >= 4, "docs/notebooks/ should hold the learner's path"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_valid_and_stored_executed(path: Path):
    import nbformat

    notebook = read(path)
    nbformat.validate(notebook)
    assert path.stat().st_size < MAX_BYTES, f"{path.name} is {path.stat().st_size:,} bytes; keep the outputs small"
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, f"{path.name} has no code"
    assert notebook.cells[0].cell_type == "markdown", "a notebook opens with what it teaches"
    missing = [i for i, cell in enumerate(code) if cell.source.strip() and cell.execution_count is None]
    assert not missing, f"{path.name}: code cells {missing} were stored unexecuted; run `make notebooks-execute`"
    for cell in code:
        for output in cell.outputs:
            assert output.output_type != "error", f"{path.name} was stored with an error: {output.get('ename')}"
            for kind, data in output.get("data", {}).items():
                if kind.startswith("image/"):
                    assert len(data) < MAX_IMAGE_BYTES, f"{path.name}: a {len(data):,}-byte figure; lower its dpi"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_uses_only_the_public_api(path: Path):
    notebook = read(path)
    used = [name for cell in notebook.cells if cell.cell_type == "code" for name in private_names(code_of(cell))]
    assert not used, f"{path.name} reaches past scratchlm's public API: {sorted(set(used))}"


def test_the_check_finds_private_names():
    source = ("import scratchlm\nimport scratchlm.models.gpt\nfrom scratchlm.plots import figure\n"
              "from scratchlm import train, Trainer\nimport scratchlm as s\ns.trainer.Trainer\nscratchlm.load('x')\n")
    assert private_names(source) == ["import scratchlm.models.gpt", "from scratchlm.plots import ...",
                                     "from scratchlm import Trainer", "s.trainer"]
    assert private_names(code_of({"source": "%time x = 1\n!ls\nscratchlm.train"})) == []


# ---------------------------------------------------------------- what the notebooks need from the API


def test_every_public_name_resolves():
    for name in scratchlm.__all__:
        assert getattr(scratchlm, name) is not None, name
    assert scratchlm.human_numbers_text(3) == "one . two . three"
    stream = scratchlm.LMStream(np.arange(27), batch_size=4, bptt=3)  # the picture of batches/LMStream's docstring
    x0, _ = stream.batch(0)
    x1, y1 = stream.batch(1)
    assert x0[:, 0].tolist() == [0, 6, 12, 18] and x1[0].tolist() == [3, 4, 5] and y1[0].tolist() == [4, 5, 6]


def test_metrics_table_has_a_row_per_evaluation(hn_run: Path):
    run = scratchlm.load(hn_run, device="cpu")
    lines = run.metrics_table().splitlines()
    assert len(lines) == len(run.metrics) + 2 and len(run.metrics) >= 1
    assert "valid accuracy" in lines[0] and lines[-1].count("|") == lines[0].count("|")
    assert f"{run.metrics[-1]['valid_accuracy']:.4f}" in lines[-1]


def test_teacher_forcing_shows_the_target_shifted_right(tmp_path: Path):
    data = tmp_path / "pairs.tsv"
    numbers = scratchlm.human_numbers_text(3000).split(" . ")
    data.write_text("".join(f"{' '.join(str(n))}\t{words}\n" for n, words in enumerate(numbers, 1)))
    run = scratchlm.train(str(data), "seq2seq", tmp_path / "run", tokenizer="word", epochs=1, batch_size=32,
                          settings={"n_embed": 8, "n_hidden": 8})
    shown = run.teacher_forcing("twenty one")
    assert shown == {"decoder_input": ["<bos>", "twenty", "one"], "targets": ["twenty", "one", "<eos>"]}


def test_a_picture_leaves_the_notebooks_pyplot_alone(tmp_path: Path):
    """scratchlm draws off-screen on figures of its own: the caller's backend (a notebook's inline one)
    stays chosen, so its own plt.show() still shows, and pyplot holds none of scratchlm's figures."""
    code = ("import matplotlib\nmatplotlib.use('svg')\nimport matplotlib.pyplot as plt\nimport scratchlm\n"
            f"scratchlm.plot_attention(['a', 'b'], ['x'], [[0.3, 0.7]], {str(tmp_path / 'a.png')!r})\n"
            "print(matplotlib.get_backend(), plt.get_fignums())\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["svg", "[]"]
    assert (tmp_path / "a.png").read_bytes().startswith(b"\x89PNG")


def execute(path: Path, workdir: Path, seconds: float, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run the notebook in a fresh kernel in `workdir`; the notebook is killed, kernel and all, after `seconds`."""
    copy = workdir / path.name
    copy.write_text(path.read_text())
    command = [str(Path(sys.executable).parent / "jupyter-execute"), "--kernel_name=python3",
               f"--timeout={int(seconds)}", str(copy)]
    process = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)  # its own group: a timeout ends the kernel too
    try:
        stdout, stderr = process.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"{path.name} ran past {seconds:.0f} s")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path: Path, tmp_path: Path):
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "SCRATCHLM_CACHE": str(tmp_path / "cache")}
    if SHARED_DATA.is_dir():  # the notebooks then read the real data sets, as a learner's checkout does
        env["SCRATCHLM_DATA"] = str(SHARED_DATA)
    start = time.monotonic()
    result = execute(path, tmp_path, NOTEBOOK_SECONDS, env)
    seconds = time.monotonic() - start
    assert result.returncode == 0, f"{path.name} failed after {seconds:.0f} s:\n{result.stderr[-4000:]}"
