"""RNN encoder-decoders for translation, with and without attention.

One class covers the lineage, each step one setting of `Seq2SeqConfig`:

- Sutskever et al. 2014, "Sequence to Sequence Learning with Neural Networks": an encoder RNN reads the
  source, its final state starts a decoder RNN that predicts the target token by token. Reading the
  source backwards (`reverse_source`, their section 3.3) puts its first words next to the target's.
- Cho et al. 2014, "Learning Phrase Representations using RNN Encoder-Decoder for Statistical Machine
  Translation" (`feed_context`): the encoder's summary c is fed to the decoder at every step and to the
  output, eqs. h_t = f(h_{t-1}, y_{t-1}, c) and P(y_t | ...) = g(h_t, y_{t-1}, c) of their section 2.2.
- Bahdanau et al. 2015, "Neural Machine Translation by Jointly Learning to Align and Translate"
  (`attention="bahdanau"`): a bidirectional encoder, and at each step a context c_i, the average of the
  encoder's outputs h_j weighted by how well each matches the previous decoder state s_{i-1}:

      e_ij  = v^T tanh(W_q s_{i-1} + W_k h_j)          appendix A.1.2 (W_a, U_a there)
      a_ij  = softmax_j(e_ij)                          eq. (6), PAD positions masked out
      c_i   = sum_j a_ij h_j                           eq. (5)
      s_i   = f(s_{i-1}, y_{i-1}, c_i)                 eq. (4)
      o_i   = tanh(W_o [s_i; E y_{i-1}; c_i])          the readout of A.2.2, tanh instead of maxout

- Luong et al. 2015, "Effective Approaches to Attention-based Neural Machine Translation"
  (`attention="dot"` or `"general"`): the decoder steps first, then attends with its new state h_t:

      score(h_t, h_s) = h_t^T h_s  |  h_t^T W_a h_s    eq. (8), dot | general
      h~_t = tanh(W_c [c_t; h_t])                      eq. (5), the attentional vector
      p(y_t | ...) = softmax(W_s h~_t)                 eq. (6)

  With `input_feeding` (their section 3.3) h~_{t-1} is concatenated to the decoder's input at step t.

The decoder's initial state (every variant): for each layer, the encoder's final states of both
directions, concatenated, through one learned Linear + tanh, s_0 = tanh(W_s [->h_S; <-h_1]). Bahdanau
(A.2.2) reads the backward state only; reading both costs nothing and gives a unidirectional encoder
the same bridge (Cho's h'_0 = tanh(V' c)). An LSTM's cell state gets a bridge of its own.

The interface, shared with any encoder-decoder `scratchlm.decode` searches with:

    logits, loss, attention = model(src, src_lengths, tgt_in, targets=None, sampling=0.0)
    memory = model.encode(src, src_lengths)          # Memory; memory.select(index) reorders its rows
    state = model.init_state(memory)
    logits, state, attention = model.decode_step(y_prev, state, memory)
    state = model.select_state(state, index)

`forward` runs the decoder over the whole target in one call when no step needs the previous step's
output (no attention, or Luong's without input feeding, and no scheduled sampling), and otherwise loops
over `decode_step`: training and decoding compute the same thing (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from scratchlm.data.tokenize import BOS, EOS, PAD
from scratchlm.errors import UserError
from scratchlm.models.base import Model

CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}
ATTENTION = ("none", "bahdanau", "dot", "general")
RNNState = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # nn.GRU's h, or nn.LSTM's (h, c): (layers, B, H)


@dataclass
class Seq2SeqConfig:
    src_vocab_size: int = 0  # source tokens; filled from the data by the task
    tgt_vocab_size: int = 0  # target tokens; filled from the data by the task (equal for a joint vocabulary)
    cell: Literal["gru", "lstm"] = "gru"  # the recurrent unit of encoder and decoder
    n_embed: int = 256  # width of the source and target embeddings
    n_hidden: int = 512  # hidden state of each layer (per direction in the encoder)
    n_layers: int = 1  # stacked layers, in the encoder and in the decoder
    bidirectional: bool = True  # the encoder reads the source both ways; its outputs are 2 n_hidden wide
    reverse_source: bool = False  # feed each source sentence's tokens backwards, padding left in place (Sutskever)
    attention: Literal["none", "bahdanau", "dot", "general"] = "none"  # how each step looks at the source
    input_feeding: bool = False  # Luong: the previous attentional vector joins the decoder input (dot/general)
    feed_context: bool = False  # Cho: the encoder's summary c joins every decoder input and the readout (no attention)
    n_attention: int | None = None  # width of Bahdanau's scoring layer (W_q s + W_k h); None: n_hidden
    dropout: float = 0.2  # on the embeddings, between stacked layers and before the output layer
    tie_embeddings: bool = False  # the output layer's matrix is the target embedding (via a projection if needed)
    sampling: float = 0.0  # scheduled sampling (Bengio et al. 2015): the share of its own predictions the decoder
    #                        is fed in training, reached linearly by the end of the run; 0: teacher forcing only
    label_smoothing: float = 0.0  # training loss: this share of each target's probability spread over the vocabulary

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise UserError(f"unknown cell {self.cell!r}; choose one of {', '.join(CELLS)}")
        if self.attention not in ATTENTION:
            raise UserError(f"unknown attention {self.attention!r}; choose one of {', '.join(ATTENTION)}")
        if min(self.n_embed, self.n_hidden, self.n_layers) < 1 or (self.n_attention or 1) < 1:
            raise UserError("n_embed, n_hidden, n_layers and n_attention must be at least 1")
        if min(self.src_vocab_size, self.tgt_vocab_size) < 0:
            raise UserError("src_vocab_size and tgt_vocab_size cannot be negative")
        if not 0 <= self.label_smoothing < 1:
            raise UserError(f"label_smoothing {self.label_smoothing} must be in [0, 1)")
        if not 0 <= self.sampling <= 1:
            raise UserError(f"sampling {self.sampling} must be in [0, 1]")
        if not 0 <= self.dropout < 1:
            raise UserError(f"dropout {self.dropout} must be in [0, 1)")
        if self.input_feeding and self.attention not in ("dot", "general"):
            raise UserError("input_feeding is Luong's: it needs attention=dot or attention=general")
        if self.feed_context and self.attention != "none":
            raise UserError("feed_context is Cho's summary for a decoder without attention; use attention=none")
        if self.attention == "dot" and self.bidirectional:
            raise UserError("dot attention needs encoder outputs as wide as the decoder: "
                            "set bidirectional=false, or use attention=general")

    @property
    def n_memory(self) -> int:
        """Width of the encoder's outputs h_j."""
        return self.n_hidden * (2 if self.bidirectional else 1)


# ---------------------------------------------------------------- batches


def pad_batch(sentences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists -> (ids (B, S) padded with PAD on the right, lengths (B,))."""
    lengths = torch.tensor([len(s) for s in sentences])
    ids = torch.full((len(sentences), max(lengths.max().item(), 1)), PAD)
    for i, sentence in enumerate(sentences):
        ids[i, : len(sentence)] = torch.tensor(sentence, dtype=torch.long)
    return ids, lengths


def shift_right(targets: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Target token lists -> (tgt_in, targets), both (B, T+1): the teacher-forcing pair.

        target     a  b  c                    tgt_in   BOS a  b  c
                                              targets  a   b  c  EOS
    The decoder reads tgt_in[t] and is scored on targets[t]: the target shifted right behind BOS.
    """
    tgt_in, _ = pad_batch([[BOS, *t] for t in targets])
    gold, _ = pad_batch([[*t, EOS] for t in targets])
    return tgt_in, gold


def reverse_padded(src: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each row's first `length` tokens in reverse order, its padding left where it is (Sutskever 2014)."""
    B, S = src.shape
    j = torch.arange(S, device=src.device)[None]  # (1, S)
    n = lengths.to(src.device)[:, None]  # (B, 1)
    return src.gather(1, torch.where(j < n, n - 1 - j, j))  # an involution: applied twice it is the identity


def seq2seq_loss(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy over the real target tokens (PAD ignored), in float32 whatever the logits' dtype.

    label_smoothing eps: the target distribution is 1 - eps on the right token plus eps spread evenly over
    the vocabulary (Szegedy et al. 2016; Vaswani et al. 2017, section 5.4)."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=PAD,
                           label_smoothing=label_smoothing)


# ---------------------------------------------------------------- attention


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """softmax over source positions (the last dim) of scores (B, T, S), PAD (mask False) at exactly 0."""
    return scores.masked_fill(~mask[:, None, :], float("-inf")).softmax(dim=-1)


def attend(scores: torch.Tensor, values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights a = softmax(scores) over the real source positions and the context c = a @ H.

    scores (B, T, S), values H (B, S, D), mask (B, S) -> context (B, T, D), weights (B, T, S).
    """
    weights = masked_softmax(scores, mask)
    return weights @ values, weights


class BahdanauAttention(nn.Module):
    """Additive attention, e_ij = v^T tanh(W_q s_i + W_k h_j) (Bahdanau et al. 2015, appendix A.1.2).

    W_k h_j does not depend on the step: `keys` computes it once per sentence, the encoder's Memory keeps it.
    """

    def __init__(self, n_query: int, n_key: int, n_attention: int):
        super().__init__()
        self.W_q = nn.Linear(n_query, n_attention, bias=False)
        self.W_k = nn.Linear(n_key, n_attention, bias=False)
        self.v = nn.Linear(n_attention, 1, bias=False)

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        return self.W_k(memory)  # (B, S, A)

    def scores(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """query (B, T, Q), keys (B, S, A) -> scores (B, T, S)."""
        return self.v(torch.tanh(self.W_q(query)[:, :, None] + keys[:, None])).squeeze(-1)  # (B, T, S, A) -> (B, T, S)


class LuongAttention(nn.Module):
    """Multiplicative attention, score = h_t^T h_s (dot) or h_t^T W_a h_s (general) (Luong et al. 2015, eq. 8).

    For general, W_a h_s does not depend on the step and is computed once per sentence by `keys`.
    """

    def __init__(self, kind: Literal["dot", "general"], n_query: int, n_key: int):
        super().__init__()
        self.W_a = nn.Linear(n_key, n_query, bias=False) if kind == "general" else None

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        return memory if self.W_a is None else self.W_a(memory)  # (B, S, Q)

    def scores(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """query (B, T, Q), keys (B, S, Q) -> scores (B, T, S)."""
        return query @ keys.transpose(1, 2)


# ---------------------------------------------------------------- the model


def _select(x: RNNState | None, index: torch.Tensor, dim: int) -> RNNState | None:
    if x is None:
        return None
    if isinstance(x, tuple):
        return tuple(t.index_select(dim, index) for t in x)
    return x.index_select(dim, index)


@dataclass
class Memory:
    """What the decoder needs from the encoder, for a batch of B sentences."""

    outputs: torch.Tensor  # (B, S, D) the encoder's outputs h_j, in the source's own order; D = n_memory
    mask: torch.Tensor  # (B, S) True at real source tokens, False at PAD
    state: RNNState  # the decoder's initial state s_0, (layers, B, H) or an LSTM's (h, c)
    summary: torch.Tensor | None = None  # (B, D) Cho's c: the top layer's final states, both directions
    keys: torch.Tensor | None = None  # (B, S, A) the attention's step-independent half (W_k h_j), or None

    def select(self, index: torch.Tensor) -> Memory:
        """The rows `index` (beam search repeats each sentence beam times, and reorders)."""
        return Memory(outputs=self.outputs.index_select(0, index), mask=self.mask.index_select(0, index),
                      state=_select(self.state, index, 1), summary=_select(self.summary, index, 0),
                      keys=_select(self.keys, index, 0))


@dataclass
class DecoderState:
    """The decoder's state between steps."""

    rnn: RNNState  # (layers, B, H), or an LSTM's (h, c)
    feed: torch.Tensor | None = None  # (B, H) the previous attentional vector h~_{t-1} (input feeding only)


class Seq2Seq(Model):
    """Embedding -> encoder RNN (packed) -> bridge -> decoder RNN with optional attention -> readout -> linear."""

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        if min(config.src_vocab_size, config.tgt_vocab_size) <= EOS:
            raise UserError("src_vocab_size and tgt_vocab_size are filled from the data; "
                            f"got {config.src_vocab_size} and {config.tgt_vocab_size}")
        self.config = config
        self.sampling_now = 0.0  # scheduled sampling's rate at this point of the run (follow_progress)
        c = config
        E, H, D, L = c.n_embed, c.n_hidden, c.n_memory, c.n_layers
        rnn = CELLS[c.cell]
        between = c.dropout if L > 1 else 0.0
        self.drop = nn.Dropout(c.dropout)
        self.src_embed = nn.Embedding(c.src_vocab_size, E, padding_idx=PAD)
        self.encoder = rnn(E, H, L, batch_first=True, bidirectional=c.bidirectional, dropout=between)
        self.bridge = nn.Linear(D, H)  # s_0 = tanh(W_s [->h_S; <-h_1]), per layer
        self.bridge_cell = nn.Linear(D, H) if c.cell == "lstm" else None

        self.attention: BahdanauAttention | LuongAttention | None = None
        if c.attention == "bahdanau":
            self.attention = BahdanauAttention(H, D, c.n_attention or H)
        elif c.attention in ("dot", "general"):
            self.attention = LuongAttention(c.attention, H, D)
        # what joins the embedded previous token at the decoder's input: Cho's c, Bahdanau's c_i, Luong's h~_{t-1}
        extra = D * (c.feed_context or c.attention == "bahdanau") + H * c.input_feeding
        self.tgt_embed = nn.Embedding(c.tgt_vocab_size, E, padding_idx=PAD)
        self.decoder = rnn(E + extra, H, L, batch_first=True, dropout=between)
        # the readout: Cho's and Bahdanau's tanh(W_o [s_t; E y_{t-1}; c]), Luong's tanh(W_c [c_t; h_t]);
        # Sutskever's plain decoder predicts from s_t itself
        readout_in = {"none": H + E + D if c.feed_context else 0, "bahdanau": H + E + D, "dot": D + H, "general": D + H}
        self.readout = nn.Linear(readout_in[c.attention], H) if readout_in[c.attention] else None
        self.project = nn.Linear(H, E, bias=False) if c.tie_embeddings and E != H else None
        self.out = nn.Linear(E if self.project is not None or c.tie_embeddings else H, c.tgt_vocab_size)
        if c.tie_embeddings:
            self.out.weight = self.tgt_embed.weight  # one (V, E) tensor, read at both ends (Press and Wolf 2017)

    @property
    def needs_step_loop(self) -> bool:
        """Whether each decoder step reads its previous step's output (Bahdanau's query s_{i-1}, Luong's h~_{t-1})."""
        return self.config.attention == "bahdanau" or self.config.input_feeding

    # ------------------------------------------------ encoder

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> Memory:
        """Read the source: src (B, S) padded with PAD on the right, src_lengths (B,) -> Memory."""
        B, S = src.shape
        c = self.config
        if c.reverse_source:
            src = reverse_padded(src, src_lengths)
        packed = pack_padded_sequence(self.drop(self.src_embed(src)), src_lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)  # padding never enters the recurrence
        outputs, final = self.encoder(packed)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=S)  # (B, S, D), zeros at PAD
        if c.reverse_source:  # back to the source's own order, so that attention weights index the source as given
            outputs = outputs.gather(1, reverse_padded(torch.arange(S, device=src.device).expand(B, S),
                                                       src_lengths)[..., None].expand_as(outputs))
        h, cell = final if c.cell == "lstm" else (final, None)
        h, cell = self._both_directions(h), None if cell is None else self._both_directions(cell)  # (L, B, D)
        state = torch.tanh(self.bridge(h))  # (L, B, H)
        if cell is not None:
            state = (state, torch.tanh(self.bridge_cell(cell)))
        mask = torch.arange(S, device=src.device)[None] < src_lengths.to(src.device)[:, None]  # (B, S)
        keys = None if self.attention is None else self.attention.keys(outputs)
        return Memory(outputs, mask, state, summary=h[-1] if c.feed_context else None, keys=keys)

    def _both_directions(self, final: torch.Tensor) -> torch.Tensor:
        """nn.GRU's final states (L * dirs, B, H) -> (L, B, dirs * H): per layer, [->h_S; <-h_1]."""
        dirs = 2 if self.config.bidirectional else 1
        L, B, H = final.size(0) // dirs, final.size(1), final.size(2)
        return final.view(L, dirs, B, H).transpose(1, 2).reshape(L, B, dirs * H)

    # ------------------------------------------------ decoder

    def init_state(self, memory: Memory) -> DecoderState:
        B = memory.outputs.size(0)
        feed = memory.outputs.new_zeros(B, self.config.n_hidden) if self.config.input_feeding else None
        return DecoderState(memory.state, feed)  # h~_0 = 0

    def select_state(self, state: DecoderState, index: torch.Tensor) -> DecoderState:
        return DecoderState(_select(state.rnn, index, 1), _select(state.feed, index, 0))

    def decode_step(self, y_prev: torch.Tensor, state: DecoderState, memory: Memory,
                    need_weights: bool = True) -> tuple[torch.Tensor, DecoderState, torch.Tensor | None]:
        """One step: y_prev (B,) -> logits (B, V), the new state, attention weights (B, S) or None (the
        weights are the attention's own, computed at every step: `need_weights` changes nothing here)."""
        logits, state, weights = self._decode(y_prev[:, None], state, memory)
        return logits[:, 0], state, None if weights is None else weights[:, 0]

    def _decode(self, y: torch.Tensor, state: DecoderState,
                memory: Memory) -> tuple[torch.Tensor, DecoderState, torch.Tensor | None]:
        """Decode T steps of y (B, T) at once: T = 1 unless `needs_step_loop` is False (the fast path)."""
        B, T = y.shape
        c = self.config
        emb = self.drop(self.tgt_embed(y))  # (B, T, E)
        inputs, context, weights = [emb], None, None
        if c.feed_context:
            context = memory.summary[:, None].expand(B, T, -1)  # (B, T, D) the same c at every step
            inputs.append(context)
        if c.input_feeding:
            inputs.append(state.feed[:, None])  # (B, 1, H)
        if c.attention == "bahdanau":  # attend with s_{i-1}, before the step
            top = (state.rnn[0] if isinstance(state.rnn, tuple) else state.rnn)[-1]  # (B, H)
            context, weights = attend(self.attention.scores(top[:, None], memory.keys), memory.outputs, memory.mask)
            inputs.append(context)  # (B, 1, D)
        hidden, rnn = self.decoder(torch.cat(inputs, dim=-1), state.rnn)  # (B, T, H)
        if c.attention in ("dot", "general"):  # attend with h_t, after the step
            context, weights = attend(self.attention.scores(hidden, memory.keys), memory.outputs, memory.mask)
        out = self._readout(hidden, emb, context)  # (B, T, H)
        logits = self.out(self.drop(out if self.project is None else self.project(out)))  # (B, T, V)
        return logits, DecoderState(rnn, out[:, -1] if c.input_feeding else None), weights

    def _readout(self, hidden: torch.Tensor, emb: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """What the output layer reads: s_t (Sutskever), tanh(W_o [s_t; E y; c]) (Cho, Bahdanau), h~_t (Luong, eq. 5)."""
        if self.readout is None:
            return hidden
        if self.config.attention in ("dot", "general"):
            return torch.tanh(self.readout(torch.cat([context, hidden], dim=-1)))
        return torch.tanh(self.readout(torch.cat([hidden, emb, context], dim=-1)))

    # ------------------------------------------------ training

    def output_size(self) -> int:
        return self.config.tgt_vocab_size

    def follow_progress(self, progress: float) -> None:
        """Scheduled sampling (Bengio et al. 2015): the chance of feeding the decoder its own last prediction
        instead of the true token rises linearly from 0 to the config's `sampling` over the run."""
        self.sampling_now = self.config.sampling * min(max(progress, 0.0), 1.0)

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor,
                targets: torch.Tensor | None = None,
                sampling: float | None = None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Teacher-forced logits (B, T, V), the loss against targets (or None), attention (B, T, S) or None.

        sampling: the chance, per sentence and step, that the decoder reads its own previous prediction
        (argmax) instead of the gold token (scheduled sampling, Bengio et al. 2015); 0 is teacher forcing.
        None: in training, the rate the run's progress set (`follow_progress`); else 0.
        """
        if sampling is None:
            sampling = self.sampling_now if self.training else 0.0
        memory = self.encode(src, src_lengths)
        state = self.init_state(memory)
        if sampling == 0 and not self.needs_step_loop:
            logits, _, weights = self._decode(tgt_in, state, memory)  # every step in one call to the RNN
        else:
            logits, weights = self._decode_loop(tgt_in, state, memory, sampling)
        loss = None if targets is None else seq2seq_loss(logits, targets, self.config.label_smoothing)
        return logits, loss, weights

    def _decode_loop(self, tgt_in: torch.Tensor, state: DecoderState, memory: Memory,
                     sampling: float) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T = tgt_in.shape
        steps, rows = [], []
        y = tgt_in[:, 0]
        for t in range(T):
            logits, state, weights = self.decode_step(y, state, memory)
            steps.append(logits)
            rows.append(weights)
            if t + 1 < T:
                y = tgt_in[:, t + 1]
                if sampling > 0:  # the prediction is fed as a token: no gradient flows through the choice
                    own = torch.rand(B, device=y.device) < sampling
                    y = torch.where(own, logits.detach().argmax(-1), y)
        return torch.stack(steps, dim=1), None if rows[0] is None else torch.stack(rows, dim=1)

