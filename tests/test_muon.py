"""Muon: the Newton-Schulz orthogonalisation, the update against torch.optim.Muon, which matrices it
takes, and a Muon run that stops and resumes exactly, through the Python API and the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import scratchlm
from scratchlm import steppers as steppers_module
from scratchlm.checkpoint import LAST
from scratchlm.config import TrainConfig
from scratchlm.errors import Interrupted, UserError
from scratchlm.models.gpt import GPT, GPTConfig
from scratchlm.models.recurrent import FusedRNN, FusedRNNConfig
from scratchlm.muon import Muon, MuonAdamW, hidden_matrices, orthogonalize
from scratchlm.steppers import make_optimizer


@pytest.mark.parametrize("shape", [(24, 64), (64, 24), (32, 32)])
def test_orthogonalize_sets_every_singular_value_near_one_keeping_the_directions(shape: tuple[int, int]):
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    o = orthogonalize(g)
    u, s, vh = torch.linalg.svd(g, full_matrices=False)
    singular = torch.linalg.svdvals(o)
    assert singular.min() > 0.5 and singular.max() < 1.5  # g's ranged over a factor of about ten
    polar = u @ vh  # the exact orthogonalisation that NS_5 approximates
    assert (o * polar).sum() / (o.norm() * polar.norm()) > 0.95


def test_orthogonalize_takes_a_stack_as_each_matrix_alone():
    stack = torch.randn(3, 16, 40, generator=torch.Generator().manual_seed(1))
    alone = torch.stack([orthogonalize(m) for m in stack])
    torch.testing.assert_close(orthogonalize(stack), alone, rtol=1e-5, atol=1e-6)


def test_muon_steps_as_torch_muon_matching_adamw_rms():
    """The same three steps from the same start; torch iterates in bf16, this Muon in fp32 on a CPU."""
    generator = torch.Generator().manual_seed(2)
    start = [torch.randn(48, 16, generator=generator), torch.randn(16, 16, generator=generator),
             torch.randn(16, 48, generator=generator)]
    grads = [[torch.randn_like(w) for w in start] for _ in range(3)]
    ours, theirs = [w.clone().requires_grad_() for w in start], [w.clone().requires_grad_() for w in start]
    optimizers = [Muon(ours, lr=0.02, weight_decay=0.1),
                  torch.optim.Muon(theirs, lr=0.02, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")]
    for step_grads in grads:
        for params, optimizer in zip((ours, theirs), optimizers, strict=True):
            for p, g in zip(params, step_grads, strict=True):
                p.grad = g.clone()
            optimizer.step()
    for a, b, w in zip(ours, theirs, start, strict=True):
        moved_ours, moved_theirs = a.detach() - w, b.detach() - w
        assert (moved_ours - moved_theirs).norm() / moved_theirs.norm() < 2e-2  # bf16 rounding, not a formula


def test_muon_refuses_anything_but_matrices():
    with pytest.raises(ValueError, match="matrices only"):
        Muon([nn.Parameter(torch.zeros(4))])


def test_hidden_matrices_leave_embeddings_and_the_output_layer_to_adamw():
    gpt = GPT(GPTConfig(vocab_size=30, n_layer=2, n_head=2, n_embd=16, block_size=8))
    names = {name for name, p in gpt.named_parameters() if any(p is q for q in hidden_matrices(gpt, 30))}
    assert names == {f"h.{i}.{part}.weight" for i in range(2)
                     for part in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")}
    rnn = FusedRNN(FusedRNNConfig(vocab_size=30, n_hidden=16, cell="lstm"))  # an untied output layer
    hidden = hidden_matrices(rnn, 30)
    assert hidden and all(p is not rnn.h_o.weight and p is not rnn.i_h.weight for p in hidden)
    optimizer, _ = make_optimizer(rnn, TrainConfig(epochs=1, optimizer="muon"), torch.device("cpu"))
    assert isinstance(optimizer, MuonAdamW)
    in_groups = [p for group in optimizer.param_groups for p in group["params"]]
    assert len(in_groups) == len(list(rnn.parameters()))  # every parameter, once
    assert {id(p) for p in in_groups} == {id(p) for p in rnn.parameters()}


def test_an_unknown_optimizer_is_refused():
    with pytest.raises(UserError, match="unknown optimizer 'sgd'"):
        TrainConfig(epochs=1, optimizer="sgd")


def test_a_muon_run_stopped_mid_epoch_resumes_to_the_same_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    options = {"model": "gpt", "optimizer": "muon", "batch_size": 64, "epochs": 2, "device": "cpu"}
    scratchlm.train("human-numbers", out=tmp_path / "straight", **options)
    calls = {"n": 0}
    detach = steppers_module.detach_state

    def detach_and_interrupt(state):  # a real SIGINT during step 7
        calls["n"] += 1
        if calls["n"] == 7:
            os.kill(os.getpid(), signal.SIGINT)
        return detach(state)

    monkeypatch.setattr(steppers_module, "detach_state", detach_and_interrupt)
    with pytest.raises(Interrupted, match="step 7"):
        scratchlm.train("human-numbers", out=tmp_path / "stopped", **options)
    monkeypatch.undo()
    run = scratchlm.train(out=tmp_path / "stopped", resume=True)
    assert run.config["train"]["optimizer"] == "muon"
    straight, stopped = load_file(str(tmp_path / "straight" / LAST)), load_file(str(tmp_path / "stopped" / LAST))
    assert all(torch.equal(straight[k], stopped[k]) for k in straight)


def test_train_with_muon_through_the_cli(tmp_path: Path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-m", "scratchlm", "train", "--model", "gpt", "--optimizer", "muon",
                           "--epochs", "1", "--out", "run", "--quiet"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "gpt: final accuracy" in done.stdout
    refused = subprocess.run([sys.executable, "-m", "scratchlm", "train", "--optimizer", "sgd", "--epochs", "1"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and refused.stderr.strip() == (
        "scratchlm: error: unknown optimizer 'sgd'; choose one of adamw, muon")


def test_resume_refuses_another_optimizer(tmp_path: Path):
    """The saved optimizer state belongs to the optimizer that wrote it."""
    scratchlm.train("human-numbers", "gpt", tmp_path / "run", optimizer="muon", epochs=1, device="cpu")
    with pytest.raises(UserError, match="optimizer cannot change .'muon' in the run, 'adamw' given"):
        scratchlm.train(out=tmp_path / "run", resume=True, epochs=2, optimizer="adamw")
