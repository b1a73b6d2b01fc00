"""Text classifiers: a sentence in, one label out (many-to-one).

The one interface of a classifier:

    logits, loss = model(idx, lengths, labels=None)

    idx      (B, T) token ids, PAD on the right        lengths (B,) the real tokens of each row
    logits   (B, n_classes)                            loss    mean cross-entropy, or None without labels

Three families, from the baseline up:

`BagOfEmbeddings`, the mean of the word vectors and a linear layer: it sees which words occur, not in
what order, so "good" counts for the same in "good service" and in "completely lacking in good taste,
good service and good ambience".

`RNNClassifier`, an LSTM or GRU (optionally bidirectional) read over the sentence, whose outputs are
pooled over time: the last state, the maximum and the mean over the real positions, concatenated (Howard
and Ruder 2018, section 3.3, "concat pooling": h_c = [h_T, maxpool(H), meanpool(H)]), then a small
head. The recurrence reads the words in order, so it can learn what "lacking in" does to "good".

`LMClassifier`, ULMFiT (Howard and Ruder 2018): the body of a trained language model (any of the registry's:
its output layer taken off, so that it gives its last layer's states instead of next-word logits), then
the same pooling and head. It is fine-tuned with discriminative learning rates (section 3.2, equation 2:
each layer group down from the top learns at the rate of the one above divided by 2.6, `layer_groups`)
and gradual unfreezing (section 3.3: the head first, then one more group from the top at each stage,
`unfreeze`). The registry builds its body (scratchlm.models.registry): this module knows no model by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from scratchlm.errors import UserError
from scratchlm.models.base import LanguageModel, Model

POOLINGS = ("concat", "last", "max", "mean")


def classifier_loss(logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor | None:
    return None if labels is None else F.cross_entropy(logits.float(), labels)


def padding_mask(idx: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, T, 1): 1.0 at the real tokens, 0.0 at the padding."""
    return (torch.arange(idx.size(1), device=idx.device)[None, :] < lengths[:, None]).unsqueeze(-1)


def pool(hidden: torch.Tensor, last: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """Pooling over time: (B, T, D) outputs and (B, D) last states -> (B, D) or (B, 3D) for concat.

    Max and mean are over the real positions only: a padded row must not pool its padding."""
    if how == "last":
        return last
    mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B, D)
    if how == "mean":
        return mean
    top = hidden.masked_fill(~mask, float("-inf")).amax(1)  # (B, D)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))  # a row of padding only
    return top if how == "max" else torch.cat([last, top, mean], -1)  # (B, 3D) for concat


def pooled_width(width: int, how: str) -> int:
    return 3 * width if how == "concat" else width


class Head(nn.Module):
    """dropout -> linear -> ReLU -> dropout -> linear: the pooled sentence to the label logits (ULMFiT's
    head without its batch norm)."""

    def __init__(self, n_in: int, n_hidden: int, n_classes: int, dropout: float):
        super().__init__()
        self.hidden = nn.Linear(n_in, n_hidden)
        self.out = nn.Linear(n_hidden, n_classes)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.drop(F.relu(self.hidden(self.drop(x)))))


def check_common(n_classes: int, dropout: float, pooling: str | None = None) -> None:
    if n_classes < 2:
        raise UserError(f"n_classes {n_classes}: a classifier needs at least two labels")
    if not 0 <= dropout < 1:
        raise UserError(f"dropout {dropout} must be in [0, 1)")
    if pooling is not None and pooling not in POOLINGS:
        raise UserError(f"pooling {pooling!r}: choose one of {', '.join(POOLINGS)}")


# ---------------------------------------------------------------- the baseline


@dataclass
class BagConfig:
    vocab_size: int = 30  # number of tokens
    n_classes: int = 2  # number of labels
    n_embed: int = 64  # width of a word vector
    dropout: float = 0.3  # on the averaged vector, before the linear layer

    def __post_init__(self) -> None:
        check_common(self.n_classes, self.dropout)
        if self.n_embed < 1:
            raise UserError("n_embed must be at least 1")


class BagOfEmbeddings(Model):
    """logits = W mean_t(E[x_t]) + b: word order is lost in the mean (the seed notes' sentiment baseline)."""

    def __init__(self, config: BagConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.n_embed)
        self.drop = nn.Dropout(config.dropout)
        self.out = nn.Linear(config.n_embed, config.n_classes)

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor,
                labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        mask = padding_mask(idx, lengths)  # (B, T, 1)
        mean = (self.embed(idx) * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B, E)
        logits = self.out(self.drop(mean))  # (B, n_classes)
        return logits, classifier_loss(logits, labels)


# ---------------------------------------------------------------- many-to-one RNN


@dataclass
class RNNClassifierConfig:
    vocab_size: int = 30  # number of tokens
    n_classes: int = 2  # number of labels
    cell: Literal["lstm", "gru"] = "lstm"  # the recurrent cell (fused nn.LSTM / nn.GRU)
    n_embed: int = 128  # width of a word vector
    n_hidden: int = 128  # hidden width of each direction of each layer
    n_layers: int = 1  # stacked layers
    bidirectional: bool = True  # a second recurrence reads the sentence backwards; their states are concatenated
    pooling: Literal["concat", "last", "max", "mean"] = "concat"  # over time: last state, max, mean, or all three
    n_head: int = 64  # hidden width of the head
    embed_dropout: float = 0.4  # on the word vectors: the model cannot rest on any one dimension of a word
    dropout: float = 0.4  # between layers and in the head

    def __post_init__(self) -> None:
        check_common(self.n_classes, self.dropout, self.pooling)
        if self.cell not in ("lstm", "gru"):
            raise UserError(f"unknown cell {self.cell!r}; choose lstm or gru")
        if min(self.n_embed, self.n_hidden, self.n_layers, self.n_head) < 1:
            raise UserError("n_embed, n_hidden, n_layers and n_head must be at least 1")
        if not 0 <= self.embed_dropout < 1:
            raise UserError(f"embed_dropout {self.embed_dropout} must be in [0, 1)")


class RNNClassifier(Model):
    """Embedding -> dropout -> LSTM/GRU over the real tokens (packed) -> pooling over time -> head."""

    def __init__(self, config: RNNClassifierConfig):
        super().__init__()
        self.config = c = config
        self.embed = nn.Embedding(c.vocab_size, c.n_embed)
        self.embed_drop = nn.Dropout(c.embed_dropout)
        rnn = nn.LSTM if c.cell == "lstm" else nn.GRU
        self.rnn = rnn(c.n_embed, c.n_hidden, c.n_layers, batch_first=True, bidirectional=c.bidirectional,
                       dropout=c.dropout if c.n_layers > 1 else 0.0)
        width = c.n_hidden * (2 if c.bidirectional else 1)
        self.head = Head(pooled_width(width, c.pooling), c.n_head, c.n_classes, c.dropout)

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor,
                labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T = idx.shape
        x = self.embed_drop(self.embed(idx))  # (B, T, E)
        # Packed, the recurrence stops at each row's last real token: its last state is the sentence's,
        # not the padding's, and the backward direction starts at the real last word.
        packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        out, state = self.rnn(packed)
        hidden, _ = pad_packed_sequence(out, batch_first=True, total_length=T)  # (B, T, D)
        h_n = state[0] if isinstance(state, tuple) else state  # (layers * directions, B, H)
        last = h_n[-2:].transpose(0, 1).reshape(B, -1) if self.config.bidirectional else h_n[-1]  # (B, D)
        logits = self.head(pool(hidden, last, padding_mask(idx, lengths), self.config.pooling))
        return logits, classifier_loss(logits, labels)


# ---------------------------------------------------------------- ULMFiT


@dataclass
class LMClassifierConfig:
    vocab_size: int = 30  # number of tokens (the language model's)
    n_classes: int = 2  # number of labels
    # The language model whose body reads the sentence: its registry name and config, as the base run's
    # config.json has them (`train --from RUN` fills it; without --from, an untrained AWD-LSTM)
    encoder: dict = field(default_factory=lambda: {"name": "awd-lstm", "config": {}})
    pooling: Literal["concat", "last", "max", "mean"] = "concat"  # over time: last state, max, mean, or all three
    n_head: int = 50  # hidden width of the head (ULMFiT's 50)
    dropout: float = 0.4  # in the head
    lr_decay: float = 2.6  # discriminative fine-tuning: each layer group learns at the rate of the one above / this
    unfreeze: float = 0.3  # share of the run over which the groups are unfrozen from the top, one per stage
    #                        (the head alone in the first stage); 0 trains every layer from the start

    def __post_init__(self) -> None:
        check_common(self.n_classes, self.dropout, self.pooling)
        if not isinstance(self.encoder, dict) or "name" not in self.encoder:
            raise UserError("encoder must name a language model: {'name': ..., 'config': {...}}")
        if self.lr_decay < 1:
            raise UserError(f"lr_decay {self.lr_decay} must be at least 1 (1: one rate for every layer)")
        if not 0 <= self.unfreeze < 1:
            raise UserError(f"unfreeze {self.unfreeze} must be in [0, 1)")
        if self.n_head < 1:
            raise UserError("n_head must be at least 1")


def output_layer(model: nn.Module, vocab_size: int) -> str:
    """The name of a language model's output layer: its last linear map onto the vocabulary."""
    names = [name for name, m in model.named_children() if isinstance(m, nn.Linear) and m.out_features == vocab_size]
    if not names:
        raise UserError(f"{type(model).__name__} has no output layer onto its vocabulary to take off; "
                        "it cannot be the body of a classifier")
    return names[-1]


class LMClassifier(Model):
    """A language model's body -> pooling over time -> head (ULMFiT; see the module docstring).

    `body` is the language model, built by the caller; its output layer is replaced by the identity, so
    that its `forward(idx)` gives the last layer's states (B, T, D) instead of logits."""

    def __init__(self, config: LMClassifierConfig, body: LanguageModel):
        super().__init__()
        self.config = config
        name = output_layer(body, config.vocab_size)
        width = getattr(body, name).in_features  # the width of the states the output layer read
        setattr(body, name, nn.Identity())
        self.body = body
        self.head = Head(pooled_width(width, config.pooling), config.n_head, config.n_classes, config.dropout)

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor,
                labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T = idx.shape
        window = self.body.window
        if window is not None and window < T:  # a Transformer reads at most its context
            idx, lengths, T = idx[:, :window], lengths.clamp(max=window), window
        hidden = self.body(idx)[0]  # (B, T, D): padding on the right never reaches the real tokens' states
        if hidden.size(1) != T:
            raise UserError(f"{type(self.body).__name__} as configured predicts after the last token only; a "
                            "classifier pools its states over the sentence: use a model that predicts after every token")
        last = hidden[torch.arange(B, device=idx.device), (lengths - 1).clamp(min=0)]  # (B, D) at each last token
        logits = self.head(pool(hidden, last, padding_mask(idx, lengths), self.config.pooling))
        return logits, classifier_loss(logits, labels)

    def layer_groups(self) -> list[tuple[list[nn.Parameter], float]]:
        """(parameters, learning-rate factor) from the top: the head at 1, then each group of the body
        below it at the rate of the one above / lr_decay (Howard and Ruder 2018, equation 2). The body's
        groups are its children in order (a list of layers counts each), which for every language model
        here runs from the embedding up."""
        groups = [list(self.head.parameters())]
        for part in reversed(list(body_parts(self.body))):
            groups.append(list(part.parameters()))
        return [(params, self.config.lr_decay ** -k) for k, params in enumerate(groups)]

    def several_processes(self) -> str | None:
        if self.config.unfreeze > 0:  # DDP wraps the parameters that train at the start
            return "gradual unfreezing changes which weights train during the run (add --set unfreeze=0)"
        return None

    def follow_progress(self, progress: float) -> None:
        """Gradual unfreezing: over the first `unfreeze` of the run, stage s of n trains the top s groups."""
        groups = self.layer_groups()
        stage = len(groups) if self.config.unfreeze == 0 else int(progress / self.config.unfreeze * len(groups)) + 1
        for k, (params, _) in enumerate(groups):
            for p in params:
                p.requires_grad_(k < stage)


def body_parts(body: nn.Module):
    """The body's children with parameters, in order; a list of layers gives each layer."""
    for child in body.children():
        parts = child if isinstance(child, nn.ModuleList) else [child]
        for part in parts:
            if any(True for _ in part.parameters()):
                yield part


def lm_classifier(config: LMClassifierConfig, build_body: Callable[[dict, int], nn.Module]) -> LMClassifier:
    """The classifier with the body `build_body(encoder, vocab_size)` makes (the registry's builder)."""
    return LMClassifier(config, build_body(config.encoder, config.vocab_size))
