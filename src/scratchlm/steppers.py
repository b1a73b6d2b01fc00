"""How a model learns: one stepper for each way, chosen once when the run is planned (`Model.learns_by`).

    GradientStepper   the task's loss -> backward -> clip -> optimizer step (AdamW, or Muon beside AdamW)
    OwnStepper        the model's own written-out step (word2vec, GloVe), at the rate the schedule sets
    CountingStepper   the whole training stream counted once (an n-gram model): one step, no rate

The trainer's loop (scratchlm/trainer.py) is the same for all three: it sets the rates of `param_groups`
(and Adam's momentum in `momentum_groups`) from the schedule, hands each batch of `epoch(batches)` to
`step`, and reads back a `Step`. A gradient step's loss stays on the device unless the loop asks for it
to be checked first (`check`: a non-finite loss caught before the weights move, which on a GPU costs a
synchronisation per step); otherwise the loop reads it only when it shows or checks it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from scratchlm.distributed import World
from scratchlm.models.base import Model, detach_state
from scratchlm.muon import Muon, MuonAdamW, hidden_matrices
from scratchlm.speed import autocast, fused_adamw


@dataclass
class Step:
    """What one step gives the loop."""

    loss: torch.Tensor | float  # the batch's mean loss: a tensor on the device, or already read; NaN: none
    carry: Any  # the recurrent state for the next batch (detached); None when there is none
    tokens: int  # tokens (pairs, entries) read, by every process together
    taken: bool = True  # False: the loss was not finite and the weights did not move
    weight: float = 1.0  # the loss' weight in the mean training loss between evaluations (1: a mean over steps)


class GradientStepper:
    """Autograd and an optimizer: AdamW with weight decay on matrices only, or Muon for the hidden matrices
    beside it (scratchlm.muon); each of the model's `layer_groups` at its own rate."""

    once = False  # its epochs repeat until the run's bound

    def __init__(self, net: nn.Module, model: Model, task: Any, cfg: Any, device: torch.device, precision: str,
                 world: World):
        self.net, self.model, self.task, self.cfg = net, model, task, cfg
        self.device, self.precision, self.world = device, precision, world
        self.optimizer, self.adamw = make_optimizer(model, cfg, device)

    # Read from the optimizer each time: loading its state replaces its groups
    @property
    def param_groups(self) -> list[dict]:
        return self.optimizer.param_groups

    @property
    def momentum_groups(self) -> list[dict]:
        """Adam's groups, whose beta1 follows the schedule; Muon keeps its own momentum."""
        return self.adamw.param_groups

    def epoch(self, batches: Any) -> Any:
        return batches

    def step(self, batch: tuple, carry: Any, progress: float, check: bool) -> Step:
        self.model.follow_progress(progress)
        with autocast(self.device, self.precision):
            loss, carry, tokens = self.task.loss(self.net, self.model, batch, carry, progress)
        tokens *= self.world.size
        shown: torch.Tensor | float = loss.detach()
        if check:  # read now, and agreed by every process: a bad batch must not move the weights
            shown = self.world.mean_loss(loss)
            if not math.isfinite(shown):
                return Step(shown, None, tokens, taken=False)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        return Step(shown, detach_state(carry), tokens)

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)


class OwnStepper:
    """A model that takes its own step (`WordVectorModel.take_step`) needs only the rate: torch.optim would
    keep no state either, and its first optimizer costs a second or two of importing torch's compiler. Its
    training loss is the mean over the pairs (entries) read, not over the steps."""

    once = False

    def __init__(self, model: Model, cfg: Any, precision: str):
        self.model, self.precision = model, precision
        self.param_groups, self.momentum_groups = [{"lr": cfg.lr}], []

    def epoch(self, batches: Any) -> Any:
        return batches

    def step(self, batch: tuple, carry: Any, progress: float, check: bool) -> Step:
        loss_sum, count = self.model.take_step(batch, self.param_groups[0]["lr"], self.precision)
        loss = loss_sum / max(count, 1)
        return Step(loss, None, count, taken=math.isfinite(loss), weight=count)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Nothing to restore: the schedule sets the rate before every step."""


class CountingStepper:
    """A model that learns by counting its training data once (`fit_counts`): its one epoch is one step, on
    the stream the training batches are cut from (`Task.count`); every process counts it all, so all hold
    the same tables. It has no training loss and no rate."""

    once = True  # one pass, whatever the bound

    def __init__(self, model: Model, task: Any):
        self.model, self.task = model, task
        self.param_groups, self.momentum_groups = [], []

    def epoch(self, batches: Any) -> Once:
        return Once(batches)

    def step(self, batch: tuple, carry: Any, progress: float, check: bool) -> Step:
        tokens = self.task.count(self.model, batch[0])
        return Step(math.nan, None, tokens, weight=0.0)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Nothing to restore: a counted model's tables are its weights."""


class Once:
    """An epoch of one batch, which is the whole of the training batches."""

    def __init__(self, batches: Any):
        self.batches = batches

    def __len__(self) -> int:
        return 1

    def batch(self, k: int) -> tuple:
        return (self.batches,)


def make_stepper(net: nn.Module, model: Model, task: Any, cfg: Any, device: torch.device, precision: str,
                 world: World) -> GradientStepper | OwnStepper | CountingStepper:
    """The stepper of the model's way of learning (`Model.learns_by`)."""
    if model.learns_by == "counting":
        return CountingStepper(model, task)
    if model.learns_by == "own_step":
        return OwnStepper(model, cfg, precision)
    return GradientStepper(net, model, task, cfg, device, precision, world)


def make_optimizer(model: Model, cfg: Any, device: torch.device) -> tuple[Any, torch.optim.AdamW]:
    """AdamW, with weight decay on matrices only: decaying biases and norm gains only pulls them to
    zero for no gain (GPT-2, nanoGPT). The fused CUDA kernel on a GPU. `optimizer="muon"`: Muon for the
    hidden matrices, this AdamW for the rest (scratchlm.muon). Returns the optimizer and its AdamW."""
    hidden = hidden_matrices(model, model.output_size()) if cfg.optimizer == "muon" else []
    taken = {id(p) for p in hidden}
    groups = []
    for params, lr_scale in model.layer_groups():
        rest = [p for p in params if p.requires_grad and id(p) not in taken]
        groups += [{"params": [p for p in rest if p.dim() >= 2], "weight_decay": cfg.weight_decay, "lr_scale": lr_scale},
                   {"params": [p for p in rest if p.dim() < 2], "weight_decay": 0.0, "lr_scale": lr_scale}]
    adamw = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.99), eps=1e-8, fused=fused_adamw(device))
    if not hidden:
        return adamw, adamw
    return MuonAdamW(Muon(hidden, lr=cfg.lr, weight_decay=cfg.weight_decay), adamw), adamw
