"""`scratchlm export RUN --format hf`: a gpt run as a Hugging Face GPT-2 folder (learned positions) or
GPT-NeoX folder (rotary positions) with equal logits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import scratchlm
from scratchlm.cli import main

TINY = {"n_layer": 2, "n_embd": 32, "n_head": 2}


HF_CLASS = {"learned": "GPT2LMHeadModel", "rotary": "GPTNeoXForCausalLM"}


@pytest.fixture(scope="module", params=["learned", "rotary"])
def gpt_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / f"gpt-{request.param}"
    scratchlm.train("human-numbers", "gpt", out, epochs=1, settings={**TINY, "bias": False, "positions": request.param})
    return out


def positions(run: Path) -> str:
    return json.loads((run / "config.json").read_text())["model"]["config"]["positions"]


def test_the_gpt2_mapping_names_every_weight_once(gpt_run: Path):
    if positions(gpt_run) != "learned":
        pytest.skip("the GPT-NeoX mapping: test_the_neox_mapping_groups_q_k_v_by_head")
    run = scratchlm.load(gpt_run, device="cpu")
    config, weights = run.model.to_hf()
    assert config["model_type"] == "gpt2" and config["n_positions"] == run.model.window
    per_block = {"ln_1.weight", "ln_1.bias", "ln_2.weight", "ln_2.bias", "attn.c_attn.weight", "attn.c_attn.bias",
                 "attn.c_proj.weight", "attn.c_proj.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight",
                 "mlp.c_proj.bias"}
    expected = {"transformer.wte.weight", "transformer.wpe.weight", "transformer.ln_f.weight", "transformer.ln_f.bias",
                *(f"transformer.h.{i}.{name}" for i in range(TINY["n_layer"]) for name in per_block)}
    assert set(weights) == expected
    c = TINY["n_embd"]
    assert weights["transformer.h.0.mlp.c_fc.weight"].shape == (c, 4 * c)  # Conv1D: (in, out)
    assert torch.equal(weights["transformer.h.0.attn.c_attn.weight"], run.model.h[0].attn.c_attn.weight.t())
    assert not weights["transformer.h.0.attn.c_attn.bias"].any()  # bias=False: GPT-2's are zeros


def test_the_neox_mapping_groups_q_k_v_by_head(gpt_run: Path):
    if positions(gpt_run) != "rotary":
        pytest.skip("the GPT-2 mapping: test_the_gpt2_mapping_names_every_weight_once")
    model = scratchlm.load(gpt_run, device="cpu").model
    config, weights = model.to_hf()
    assert config["model_type"] == "gpt_neox" and not config["use_parallel_residual"]
    assert not any("embed_out" in name or "wpe" in name for name in weights)  # tied head, no position table
    c, heads = TINY["n_embd"], TINY["n_head"]
    hs, qkv = c // heads, weights["gpt_neox.layers.0.attention.query_key_value.weight"]
    ours = model.h[0].attn.c_attn.weight
    for h in range(heads):  # head h's rows: its q, then its k, then its v
        for part in range(3):
            torch.testing.assert_close(qkv[(3 * h + part) * hs:(3 * h + part + 1) * hs],
                                       ours[part * c + h * hs: part * c + (h + 1) * hs], rtol=0, atol=0)


def test_export_hf_loads_in_transformers_with_equal_logits(gpt_run: Path, tmp_path: Path, capsys):
    transformers = pytest.importorskip("transformers")
    assert main(["export", str(gpt_run), "--format", "hf", "--out", str(tmp_path / "hf")]) == 0
    assert "config.json" in capsys.readouterr().out
    architecture = HF_CLASS[positions(gpt_run)]
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["architectures"] == [architecture]
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()  # as a user loads it
    assert type(theirs).__name__ == architecture
    ours = scratchlm.load(gpt_run, device="cpu").model.eval()
    idx = torch.randint(0, ours.config.vocab_size, (2, ours.window), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(theirs(idx).logits, ours(idx)[0], rtol=1e-5, atol=1e-5)


def test_export_hf_refuses_what_has_no_counterpart_and_a_folder_in_use(gpt_run: Path, tmp_path: Path, capsys):
    rnn = tmp_path / "rnn"
    scratchlm.train("human-numbers", "rnn", rnn, epochs=1)
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("mine")
    for argv, fragment in [(["export", str(rnn), "--format", "hf", "--out", str(tmp_path / "x")],
                            "rnn has no Hugging Face counterpart"),
                           (["export", str(gpt_run), "--format", "hf", "--out", str(used)], "is not an empty folder")]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and fragment in err[0], err
    assert (used / "keep.txt").read_text() == "mine" and not (tmp_path / "x").exists()
