"""The encoder-decoder Transformer for translation.

Vaswani et al. 2017, "Attention Is All You Need". No recurrence: an encoder of self-attention layers
reads the whole source at once; a decoder of causal self-attention layers reads the target written so
far and, through cross-attention, the encoder's outputs:

    x_0 = sqrt(d) E[src] + P[0 .. S-1]                    section 3.4 (scaled embeddings), 3.5 (positions P)
    x   = x + SelfAttn(LN(x))                             each encoder layer, every source position read
    x   = x + FFN(LN(x))                                  FFN(x) = W_2 max(0, W_1 x), eq. (2)
    m   = LN(x_enc)                                       the memory: what the decoder reads of the source

    y_0 = sqrt(d) E[tgt_in] + P[0 .. T-1]
    y   = y + CausalSelfAttn(LN(y))                       target position t reads positions <= t
    y   = y + CrossAttn(LN(y), m)                         queries from the target, keys and values from m
    y   = y + FFN(LN(y))
    logits = LN(y_dec) E^T                                the output layer tied to the embedding (section 3.4)

That is the pre-norm order (Xiong et al. 2020, "On Layer Normalization in the Transformer
Architecture"), which trains without a long warm-up; `norm="post"` is the paper's own,
x = LN(x + Sublayer(x)) (section 3.1), with no final LN. Attention is `models/attention.py`, the code
gpt uses (the fused kernel, or `attention="explicit"`, the equation; tested equal); padded source
positions are masked out of every attention that reads the source. Dropout (0.1, section 5.4) on the
embeddings, the attention weights and each sublayer's output; the registry's recipe sets it to 0, since a
15-minute run on a CPU is about two epochs, where dropout only slows learning (models/registry.py).

Embeddings. `tie_embeddings="all"` is one matrix for the source and target embeddings and the output
layer (section 3.4; Press and Wolf 2017), which needs one vocabulary for both languages (the translation
task's joint BPE, its default); "output" ties the target embedding to the output layer only. The
embeddings are multiplied by sqrt(d) and drawn from N(0, 1/d), so that sqrt(d) E[y] has unit variance
beside positions of variance 1/2: drawn at unit variance instead, the tied output layer's logits start
sqrt(d) times too large, and a model trained so here collapsed into repeating one word (BLEU 0.3).
The other matrices are Xavier-uniform (Glorot and Bengio 2010), as in the paper's tensor2tensor code.

Positions are the paper's sinusoids, PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...)
(section 3.5), any length; or learned (`positions="learned"`), one table per side of `block_size` rows.

Decoding (`scratchlm.decode`: greedy and beam search, the same code as for the RNNs) goes through the
encoder-decoder interface: `encode` computes the source's keys and values for every cross-attention
once per sentence; `decode_step` reads one new target token, appending its self-attention keys and
values to those of the tokens before (the KV cache, carried in the DecoderState, never on `self`), so
each step costs one position, not the whole prefix; cached and uncached decoding are tested identical.

Training loss: cross-entropy over the target tokens with label smoothing (section 5.4, eps_ls = 0.1:
the target distribution keeps 1 - eps on the right token and spreads eps over the vocabulary).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from scratchlm.data.tokenize import EOS
from scratchlm.errors import UserError
from scratchlm.models.attention import attention, merge_heads, split_heads
from scratchlm.models.base import Model
from scratchlm.models.seq2seq import seq2seq_loss

NORMS = ("pre", "post")
POSITIONS = ("sinusoidal", "learned")
TIES = ("all", "output", "none")
ATTENTION = ("fused", "explicit")


@dataclass
class TransformerMTConfig:
    src_vocab_size: int = 0  # source tokens; filled from the data by the task
    tgt_vocab_size: int = 0  # target tokens; filled from the data by the task
    joint_vocab: bool = False  # filled from the data: source and target share one vocabulary (--joint)
    n_encoder_layers: int = 3  # encoder layers (the paper's base model: 6)
    n_decoder_layers: int = 3  # decoder layers (the paper's base model: 6)
    n_head: int = 4  # attention heads per layer; each reads n_embd / n_head dimensions
    n_embd: int = 256  # d_model: the width of the embeddings and of every layer's input and output
    n_ffn: int = 1024  # d_ff: the inner width of the position-wise feed-forward network (4 n_embd in the paper)
    dropout: float = 0.1  # on the embeddings, the attention weights and each sublayer's output
    norm: Literal["pre", "post"] = "pre"  # LayerNorm before each sublayer (stable), or after the residual (the paper)
    positions: Literal["sinusoidal", "learned"] = "sinusoidal"  # the paper's fixed sinusoids, or a learned table
    block_size: int = 512  # learned positions: the longest sentence, in tokens, either side may have
    tie_embeddings: Literal["all", "output", "none"] = "all"  # all: one matrix for source, target and output
    #                                                            (needs a joint vocabulary); output: target and output;
    #                                                            none: three matrices
    label_smoothing: float = 0.1  # training loss: this share of each target's probability spread over the vocabulary
    attention: Literal["fused", "explicit"] = "fused"  # F.scaled_dot_product_attention, or the equation
    bias: bool = True  # biases in the linear and LayerNorm layers

    def __post_init__(self) -> None:
        for name, value, choices in (("norm", self.norm, NORMS), ("positions", self.positions, POSITIONS),
                                     ("tie_embeddings", self.tie_embeddings, TIES),
                                     ("attention", self.attention, ATTENTION)):
            if value not in choices:
                raise UserError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
        if min(self.n_encoder_layers, self.n_decoder_layers, self.n_head, self.n_embd, self.n_ffn, self.block_size) < 1:
            raise UserError("n_encoder_layers, n_decoder_layers, n_head, n_embd, n_ffn and block_size must be at least 1")
        if self.n_embd % self.n_head or self.n_embd % 2:
            raise UserError(f"n_embd {self.n_embd} must be even and a multiple of n_head {self.n_head}")
        if not 0 <= self.dropout < 1:
            raise UserError(f"dropout {self.dropout} must be in [0, 1)")
        if not 0 <= self.label_smoothing < 1:
            raise UserError(f"label_smoothing {self.label_smoothing} must be in [0, 1)")
        if min(self.src_vocab_size, self.tgt_vocab_size) < 0:
            raise UserError("src_vocab_size and tgt_vocab_size cannot be negative")
        if self.tie_embeddings == "all" and not self.joint_vocab:
            raise UserError("tie_embeddings=all shares one embedding between the two languages, which needs one "
                            "vocabulary for both (--joint, the default); with --no-joint use --set tie_embeddings=output")


def sinusoids(positions: torch.Tensor, width: int) -> torch.Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d)): (T,) -> (T, d), float32."""
    i = torch.arange(0, width, 2, device=positions.device, dtype=torch.float32)  # 2i
    angles = positions.float()[:, None] / 10000 ** (i / width)  # (T, d/2)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)  # (T, d): sin, cos, sin, cos, ...


class Residual(nn.Module):
    """A sublayer's residual connection and its LayerNorm: x + f(LN(x)) (pre-norm), or LN(x + f(x)) (post-norm)."""

    def __init__(self, c: TransformerMTConfig):
        super().__init__()
        self.pre = c.norm == "pre"
        self.norm = nn.LayerNorm(c.n_embd, bias=c.bias)
        self.drop = nn.Dropout(c.dropout)

    def before(self, x: torch.Tensor) -> torch.Tensor:
        """What the sublayer reads."""
        return self.norm(x) if self.pre else x

    def after(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The residual stream once the sublayer's output `out` is added."""
        y = x + self.drop(out)
        return y if self.pre else self.norm(y)


class SelfAttention(nn.Module):
    """Multi-head self-attention (section 3.2.2): q, k, v of every head from one matrix, one output projection.

    With `past`, the keys and values of the positions before (the KV cache), this step's are appended to them."""

    def __init__(self, c: TransformerMTConfig, causal: bool):
        super().__init__()
        self.n_head, self.causal, self.dropout = c.n_head, causal, c.dropout
        self.explicit = c.attention == "explicit"
        self.qkv = nn.Linear(c.n_embd, 3 * c.n_embd, bias=c.bias)
        self.proj = nn.Linear(c.n_embd, c.n_embd, bias=c.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                past: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        q, k, v = (split_heads(t, self.n_head) for t in self.qkv(x).chunk(3, dim=-1))  # (B, nh, T, hs) each
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)  # (B, nh, S, hs): before, then these
        y, _ = attention(q, k, v, mask, causal=self.causal, dropout=self.dropout if self.training else 0.0,
                         explicit=self.explicit)
        return self.proj(merge_heads(y)), (k, v)  # (B, T, C), the keys and values so far


class CrossAttention(nn.Module):
    """Encoder-decoder attention (section 3.2.3): queries from the decoder, keys and values from the memory.

    The keys and values depend on the source only: `keys_values` computes them once per sentence."""

    def __init__(self, c: TransformerMTConfig):
        super().__init__()
        self.n_head, self.dropout = c.n_head, c.dropout
        self.explicit = c.attention == "explicit"
        self.q = nn.Linear(c.n_embd, c.n_embd, bias=c.bias)
        self.kv = nn.Linear(c.n_embd, 2 * c.n_embd, bias=c.bias)
        self.proj = nn.Linear(c.n_embd, c.n_embd, bias=c.bias)

    def keys_values(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """memory (B, S, C) -> k, v (B, nh, S, hs) each."""
        k, v = self.kv(memory).chunk(2, dim=-1)
        return split_heads(k, self.n_head), split_heads(v, self.n_head)

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, T, C) -> (B, T, C), and with `need_weights` the weights (B, nh, T, S)."""
        q = split_heads(self.q(x), self.n_head)  # (B, nh, T, hs)
        y, weights = attention(q, k, v, mask, dropout=self.dropout if self.training else 0.0,
                               explicit=self.explicit, need_weights=need_weights)
        return self.proj(merge_heads(y)), weights


class FeedForward(nn.Module):
    """FFN(x) = W_2 max(0, W_1 x + b_1) + b_2, the same at every position (eq. 2)."""

    def __init__(self, c: TransformerMTConfig):
        super().__init__()
        self.w_1 = nn.Linear(c.n_embd, c.n_ffn, bias=c.bias)
        self.w_2 = nn.Linear(c.n_ffn, c.n_embd, bias=c.bias)
        self.drop = nn.Dropout(c.dropout)  # on the hidden layer as well, as tensor2tensor's relu_dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(self.drop(torch.relu(self.w_1(x))))


class EncoderLayer(nn.Module):
    """Self-attention over the whole source, then the feed-forward network; each in its residual."""

    def __init__(self, c: TransformerMTConfig):
        super().__init__()
        self.attn, self.r_attn = SelfAttention(c, causal=False), Residual(c)
        self.ffn, self.r_ffn = FeedForward(c), Residual(c)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.r_attn.after(x, self.attn(self.r_attn.before(x), mask)[0])
        return self.r_ffn.after(x, self.ffn(self.r_ffn.before(x)))  # (B, S, C)


class DecoderLayer(nn.Module):
    """Causal self-attention over the target so far, cross-attention to the source, the feed-forward network."""

    def __init__(self, c: TransformerMTConfig):
        super().__init__()
        self.attn, self.r_attn = SelfAttention(c, causal=True), Residual(c)
        self.cross, self.r_cross = CrossAttention(c), Residual(c)
        self.ffn, self.r_ffn = FeedForward(c), Residual(c)

    def forward(self, y: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None, k: torch.Tensor,
                v: torch.Tensor, src_mask: torch.Tensor,
                need_weights: bool = False) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], torch.Tensor | None]:
        out, cache = self.attn(self.r_attn.before(y), past=past)
        y = self.r_attn.after(y, out)
        out, weights = self.cross(self.r_cross.before(y), k, v, src_mask, need_weights)
        y = self.r_cross.after(y, out)
        return self.r_ffn.after(y, self.ffn(self.r_ffn.before(y))), cache, weights  # (B, T, C), ...


@dataclass
class Memory:
    """What the decoder needs from the encoder, for a batch of B sentences."""

    outputs: torch.Tensor  # (B, S, C) the encoder's outputs
    mask: torch.Tensor  # (B, S) True at real source tokens, False at PAD
    keys: tuple[torch.Tensor, ...]  # per decoder layer, its cross-attention's keys (B, nh, S, hs)
    values: tuple[torch.Tensor, ...]  # ... and values

    def select(self, index: torch.Tensor) -> Memory:
        """The rows `index` (beam search repeats each sentence beam times)."""
        return Memory(self.outputs.index_select(0, index), self.mask.index_select(0, index),
                      tuple(k.index_select(0, index) for k in self.keys),
                      tuple(v.index_select(0, index) for v in self.values))


@dataclass
class DecoderState:
    """The KV cache: per decoder layer, the self-attention keys and values of the target tokens read so far.

    Each step appends one position by concatenation rather than writing into a buffer sized in advance
    (gpt's KVCache): beam search reorders the rows after every step, which copies the cache anyway, and
    a cache that is a value, never changed in place, cannot be shared by mistake between hypotheses."""

    keys: tuple[torch.Tensor, ...] = ()  # (B, nh, t, hs) per layer; empty before the first token
    values: tuple[torch.Tensor, ...] = ()

    @property
    def length(self) -> int:
        """Target tokens read so far: the position of the next one."""
        return self.keys[0].size(2) if self.keys else 0


class TransformerMT(Model):
    """Embeddings -> encoder layers -> memory; embeddings -> decoder layers -> output layer. See the module docstring."""

    def __init__(self, config: TransformerMTConfig):
        super().__init__()
        if min(config.src_vocab_size, config.tgt_vocab_size) <= EOS:
            raise UserError("src_vocab_size and tgt_vocab_size are filled from the data; "
                            f"got {config.src_vocab_size} and {config.tgt_vocab_size}")
        self.config = c = config
        self.src_embed = nn.Embedding(c.src_vocab_size, c.n_embd)
        self.tgt_embed = self.src_embed if c.tie_embeddings == "all" else nn.Embedding(c.tgt_vocab_size, c.n_embd)
        learned = c.positions == "learned"
        self.src_pos = nn.Embedding(c.block_size, c.n_embd) if learned else None
        self.tgt_pos = nn.Embedding(c.block_size, c.n_embd) if learned else None
        self.drop = nn.Dropout(c.dropout)
        self.encoder = nn.ModuleList(EncoderLayer(c) for _ in range(c.n_encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(c) for _ in range(c.n_decoder_layers))
        pre = c.norm == "pre"  # post-norm ends each layer with a LayerNorm already
        self.encoder_norm = nn.LayerNorm(c.n_embd, bias=c.bias) if pre else nn.Identity()
        self.decoder_norm = nn.LayerNorm(c.n_embd, bias=c.bias) if pre else nn.Identity()
        self.out = nn.Linear(c.n_embd, c.tgt_vocab_size, bias=False)
        self.reset_parameters()
        if c.tie_embeddings != "none":
            self.out.weight = self.tgt_embed.weight  # one (V, C) tensor, read at both ends

    def reset_parameters(self) -> None:
        """Xavier-uniform matrices, zero biases, embeddings (and learned positions) from N(0, 1/d)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=self.config.n_embd ** -0.5)

    def embed(self, ids: torch.Tensor, table: nn.Embedding, positions: nn.Embedding | None, start: int = 0) -> torch.Tensor:
        """sqrt(d) E[ids] + P[start .. start + T - 1], then dropout: (B, T) -> (B, T, C)."""
        T = ids.size(1)
        if start + T > self.config.block_size and positions is not None:
            raise UserError(f"transformer-mt with learned positions reads at most {self.config.block_size} tokens a "
                            f"sentence (block_size); got {start + T}")
        pos = torch.arange(start, start + T, device=ids.device)
        p = sinusoids(pos, self.config.n_embd) if positions is None else positions(pos)  # (T, C)
        return self.drop(table(ids) * math.sqrt(self.config.n_embd) + p)

    # ------------------------------------------------ encoder

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> Memory:
        B, S = src.shape
        mask = torch.arange(S, device=src.device)[None] < src_lengths.to(src.device)[:, None]  # (B, S)
        x = self.embed(src, self.src_embed, self.src_pos)  # (B, S, C)
        for layer in self.encoder:
            x = layer(x, mask[:, None, None, :])  # the mask over keys, for every head and query
        x = self.encoder_norm(x)
        pairs = [layer.cross.keys_values(x) for layer in self.decoder]  # once per sentence, not once per step
        return Memory(x, mask, tuple(k for k, _ in pairs), tuple(v for _, v in pairs))

    # ------------------------------------------------ decoder

    def init_state(self, memory: Memory) -> DecoderState:
        return DecoderState()

    def select_state(self, state: DecoderState, index: torch.Tensor) -> DecoderState:
        return DecoderState(tuple(k.index_select(0, index) for k in state.keys),
                            tuple(v.index_select(0, index) for v in state.values))

    def decode(self, tgt_in: torch.Tensor, memory: Memory, state: DecoderState | None = None,
               need_weights: bool = False) -> tuple[torch.Tensor, DecoderState, torch.Tensor | None]:
        """Decode T target tokens (B, T) after the `state.length` ones already cached (none without a state).

        Returns logits (B, T, V), the state holding all of them, and with `need_weights` the
        cross-attention weights of every layer and head, (B, T, layers, heads, S).
        """
        state = state or DecoderState()
        y = self.embed(tgt_in, self.tgt_embed, self.tgt_pos, start=state.length)  # (B, T, C)
        src_mask = memory.mask[:, None, None, :]  # (B, 1, 1, S)
        keys, values, weights = [], [], []
        for i, layer in enumerate(self.decoder):
            past = (state.keys[i], state.values[i]) if state.keys else None
            y, (k, v), w = layer(y, past, memory.keys[i], memory.values[i], src_mask, need_weights)
            keys.append(k)
            values.append(v)
            weights.append(w)
        logits = self.out(self.decoder_norm(y))  # (B, T, V)
        stacked = torch.stack(weights, dim=2).transpose(1, 3) if need_weights else None  # (B, nh, L, T, S) -> (B, T, L, nh, S)
        return logits, DecoderState(tuple(keys), tuple(values)), stacked

    def decode_step(self, y_prev: torch.Tensor, state: DecoderState, memory: Memory,
                    need_weights: bool = False) -> tuple[torch.Tensor, DecoderState, torch.Tensor | None]:
        """One step: y_prev (B,) -> logits (B, V), the state with it cached, cross-attention (B, L, nh, S) or None."""
        logits, state, weights = self.decode(y_prev[:, None], memory, state, need_weights)
        return logits[:, 0], state, None if weights is None else weights[:, 0]

    # ------------------------------------------------ training

    def output_size(self) -> int:
        return self.config.tgt_vocab_size

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor,
                targets: torch.Tensor | None = None,
                sampling: float = 0.0) -> tuple[torch.Tensor, torch.Tensor | None, None]:
        """Teacher-forced logits (B, T, V) and the label-smoothed loss against targets (or None); every target
        position in one pass (the causal mask keeps each from the ones after it). The third value, the RNNs'
        attention, is None: `decode` gives the cross-attention weights when asked."""
        if sampling:
            raise UserError("transformer-mt reads the whole target in one pass: scheduled sampling is for the RNN decoders")
        logits, _, _ = self.decode(tgt_in, self.encode(src, src_lengths))
        loss = None if targets is None else seq2seq_loss(logits, targets, self.config.label_smoothing)
        return logits, loss, None
