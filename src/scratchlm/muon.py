"""Muon: momentum whose update is orthogonalised by a Newton-Schulz iteration, for the hidden matrices.

Jordan et al. 2024, "Muon: An optimizer for hidden layers in neural networks"
(kellerjordan.github.io/posts/muon), with the update scale of Liu et al. 2025, "Muon is Scalable for
LLM Training" (sec. 2.2), which gives Muon's steps the RMS of AdamW's so that both share one learning
rate. For a weight matrix W of shape (A, B) with gradient G_t:

    M_t = mu M_{t-1} + (1 - mu) G_t                 momentum
    U_t = (1 - mu) G_t + mu M_t                     Nesterov's look-ahead
    O_t = NS_k(U_t)                                 ~ the U V^T of U_t's SVD: every singular value near 1
    W  <- W (1 - lr wd) - lr 0.2 sqrt(max(A, B)) O_t

NS_k starts from X_0 = U_t / ||U_t||_F (on the wide side: a tall U_t is transposed) and takes k steps of
the quintic X <- a X + (b X X^T + c (X X^T)^2) X, (a, b, c) = (3.4445, -4.7750, 2.0315): coefficients
that push small singular values up fast, landing each somewhere in about [0.5, 1.5], not exactly at 1.

An orthogonalised update moves every direction of the matrix by the same amount, where Adam's updates
are dominated by a few; on the tiny shakespeare GPT it took the validation loss after 140 s on two CPU
cores from 1.85 (AdamW) to 1.70, despite steps a third slower (bench/gpt.py). Embeddings, the output
layer, biases and norm gains are not hidden matrices, and keep AdamW (`MuonAdamW`).

`Muon` computes what `torch.optim.Muon(adjust_lr_fn="match_rms_adamw")` does (tested), but iterates in
fp32 on a CPU (torch's casts to bf16, which a CPU without AMX multiplies ~10x slower: a tiny GPT trained
at 842 tokens/s instead of 8,763) and in bf16 on a GPU, and orthogonalises all matrices of one shape in
one batched product instead of one by one.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

import torch
from torch import nn

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalize(updates: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """NS_k of each matrix in `updates` (..., A, B), in bf16 on a GPU and fp32 elsewhere."""
    a, b, c = NS_COEFFICIENTS
    x = updates.to(torch.bfloat16 if updates.is_cuda else torch.float32)
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT  # iterate on the wide side: X X^T is then the smaller square
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.mT  # (..., A, A)
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.mT if tall else x).to(updates.dtype)


class Muon(torch.optim.Optimizer):
    """Muon over 2-D parameters; see the module docstring for the update."""

    def __init__(self, params: Iterable[torch.Tensor] | Iterable[dict], lr: float = 1e-3, weight_decay: float = 0.1,
                 momentum: float = 0.95, nesterov: bool = True, ns_steps: int = 5):
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay, "momentum": momentum,
                                  "nesterov": nesterov, "ns_steps": ns_steps})
        for group in self.param_groups:
            if any(p.dim() != 2 for p in group["params"]):
                raise ValueError("Muon updates matrices only; give vectors and embeddings to AdamW")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            mu, lr = group["momentum"], group["lr"]
            by_shape: dict[torch.Size, list[tuple[torch.Tensor, torch.Tensor]]] = defaultdict(list)
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buffer = state["momentum_buffer"]
                buffer.lerp_(p.grad, 1 - mu)
                by_shape[p.shape].append((p, p.grad.lerp(buffer, mu) if group["nesterov"] else buffer))
            for shape, pairs in by_shape.items():
                params = [p for p, _ in pairs]
                directions = orthogonalize(torch.stack([u for _, u in pairs]), group["ns_steps"]).unbind(0)
                torch._foreach_mul_(params, 1 - lr * group["weight_decay"])
                torch._foreach_add_(params, directions, alpha=-lr * 0.2 * math.sqrt(max(shape)))
        return loss


def hidden_matrices(model: nn.Module, vocab_size: int) -> list[nn.Parameter]:
    """The 2-D weights that neither read tokens in (embeddings) nor write them out (a layer to vocab_size
    outputs): the matrices Muon is for. A weight tied to an embedding counts as the embedding."""
    outer = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)
             or (isinstance(m, nn.Linear) and m.out_features == vocab_size)}
    return [p for p in model.parameters() if p.requires_grad and p.dim() == 2 and id(p) not in outer]


class MuonAdamW:
    """Muon for the hidden matrices and AdamW for every other parameter, stepped as one optimizer
    (`trainer.make_optimizer` builds the pair).

    `param_groups` lists both optimizers' groups (the trainer sets each one's lr from the schedule;
    Muon's groups have no `betas`); `state_dict` holds both, so a checkpoint resumes either exactly.
    """

    def __init__(self, muon: Muon, adamw: torch.optim.AdamW):
        self.muon, self.adamw = muon, adamw

    @property
    def param_groups(self) -> list[dict]:
        return self.muon.param_groups + self.adamw.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.muon.zero_grad(set_to_none=set_to_none)
        self.adamw.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        self.muon.step()
        self.adamw.step()

    def state_dict(self) -> dict:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.muon.load_state_dict(state["muon"])
        self.adamw.load_state_dict(state["adamw"])
