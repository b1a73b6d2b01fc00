"""GPT: a decoder-only Transformer language model.

Radford et al. 2018, "Improving Language Understanding by Generative Pre-Training" (GPT), and 2019,
"Language Models are Unsupervised Multitask Learners" (GPT-2), on the Transformer of Vaswani et al.
2017, "Attention Is All You Need"; the code follows Karpathy's nanoGPT `model.py`. The input is the sum
of a learned token and a learned position embedding, read by n_layer blocks in GPT-2's pre-norm order
(LayerNorm before each branch, so the residual stream itself is never normalised):

    x_0    = E[idx] + P[0 .. T-1]                        (B, T, C)
    x      = x + Attn(LN_1(x))                           each block
    x      = x + MLP(LN_2(x))                            MLP(x) = W_2 gelu(W_1 x), 4C wide
    logits = LN_f(x_L) E^T                               the head tied to the embedding (Press and Wolf 2017)

With `positions="rotary"` (Su et al. 2021, "RoFormer") there is no table P: x_0 = E[idx], and every
attention turns its queries and keys by angles proportional to their positions (`attention.rotate`), so
that a query meets a key by how far apart they are, not where they are. On tiny-shakespeare it is the
recipe's choice (the 140-s runs behind it are in models/registry.py, by GPT_CONFIG); `to_hf` writes such
a model as a GPT-NeoX.

Attention is Vaswani et al.'s eq. (1), per head, with a causal mask M so that position t reads
positions <= t only:

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + M) V          M_ts = 0 if s <= t, else -inf

computed by `F.scaled_dot_product_attention` (a fused kernel: flash attention where it can), or, with
`attention="explicit"`, written out as above: slower and hungrier (it keeps the (T, T) matrix), but
every step is visible; the two are tested equal. Both live in `models/attention.py`, which the
encoder-decoder Transformer (`models/transformer_mt.py`) shares.

Initialisation is GPT-2's: N(0, 0.02) for every weight matrix and embedding, biases zero, and the two
projections per block that write into the residual stream scaled by 1/sqrt(2 n_layer): each block adds
two of them to the stream, whose variance would otherwise grow with depth.

The model reads up to `block_size` tokens (its `window`) and predicts after each of them. It carries no
state from one training batch to the next. At inference a `KVCache` (from `new_cache`) passed as the
state holds the keys and values of the tokens already read, so each new token costs one position
instead of the whole context; the model returns the same cache, holding the new token too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from scratchlm.errors import UserError
from scratchlm.models.attention import attention, merge_heads, rotary_tables, rotate, split_heads
from scratchlm.models.base import LanguageModel, lm_loss

# Named sizes: a preset fills the fields of GPTConfig that are left None.
PRESETS: dict[str, dict] = {
    # CPU, minutes: nanoGPT's shakespeare-char recipe for a laptop (4 layers, 4 heads, 128 wide, context 64).
    "tiny": {"block_size": 64, "n_layer": 4, "n_head": 4, "n_embd": 128, "dropout": 0.0, "bias": False},
    # one GPU, minutes: nanoGPT's config/train_shakespeare_char.py, 10.7M parameters with 65 characters.
    "shakespeare-char": {"block_size": 256, "n_layer": 6, "n_head": 6, "n_embd": 384, "dropout": 0.2, "bias": False},
    # GPT-2 small: 124M parameters with its 50,257-token vocabulary.
    "gpt2": {"block_size": 1024, "n_layer": 12, "n_head": 12, "n_embd": 768, "dropout": 0.0, "bias": True},
}
ATTENTION = ("fused", "explicit")
POSITIONS = ("learned", "rotary")
ROTARY_BASE = 10_000.0  # RoFormer's: the slowest pair of a head turns by position * base^(-(d-2)/d)


@dataclass
class GPTConfig:
    vocab_size: int = 65  # number of tokens
    preset: Literal["tiny", "shakespeare-char", "gpt2"] = "tiny"  # named sizes for the fields below left None
    block_size: int | None = None  # context length: the most tokens the model reads (its window)
    n_layer: int | None = None  # transformer blocks
    n_head: int | None = None  # attention heads per block; each reads n_embd / n_head dimensions
    n_embd: int | None = None  # width of the residual stream and the embeddings
    dropout: float | None = None  # on the embeddings, the attention weights and each branch's output
    bias: bool | None = None  # biases in the linear and LayerNorm layers (GPT-2 has them; as good without)
    attention: Literal["fused", "explicit"] = "fused"  # F.scaled_dot_product_attention, or the equation
    positions: Literal["learned", "rotary"] = "learned"  # GPT-2's learned table P, or queries and keys turned (RoPE)

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise UserError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        for name, value in PRESETS[self.preset].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if min(self.vocab_size, self.block_size, self.n_layer, self.n_head, self.n_embd) < 1:
            raise UserError("vocab_size, block_size, n_layer, n_head and n_embd must be at least 1")
        if self.n_embd % self.n_head:
            raise UserError(f"n_embd {self.n_embd} must be a multiple of n_head {self.n_head}")
        if not 0 <= self.dropout < 1:
            raise UserError(f"dropout {self.dropout} must be in [0, 1)")
        if self.attention not in ATTENTION:
            raise UserError(f"unknown attention {self.attention!r}; choose one of {', '.join(ATTENTION)}")
        if self.positions not in POSITIONS:
            raise UserError(f"unknown positions {self.positions!r}; choose one of {', '.join(POSITIONS)}")
        if self.positions == "rotary" and (self.n_embd // self.n_head) % 2:
            raise UserError(f"rotary positions turn pairs of dimensions: the head size n_embd / n_head = "
                            f"{self.n_embd // self.n_head} must be even")


class KVCache:
    """The keys and values of the tokens read so far, in every layer, allocated once for the whole context.

    A layer's `set` writes its new keys and values after the `length` positions already held and
    returns all of them; the model calls `advance` once every layer has written, and `clear` empties
    the cache for reuse (nothing is zeroed: positions past `length` are never read).
    """

    def __init__(self, n_layer: int, batch_size: int, n_head: int, capacity: int, head_size: int,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        shape = (n_layer, batch_size, n_head, capacity, head_size)
        self.k = torch.zeros(shape, device=device, dtype=dtype)  # (L, B, nh, capacity, hs)
        self.v = torch.zeros(shape, device=device, dtype=dtype)  # (L, B, nh, capacity, hs)
        self.layers = [(self.k[i], self.v[i]) for i in range(n_layer)]  # each layer's (k, v): views, written in place
        self.length = 0  # positions filled, the same in every layer between forward passes
        self.weights: tuple | None = None  # the model's tensors in reading order (GPT.read_cached), set by new_cache

    @property
    def capacity(self) -> int:
        return self.k.size(3)

    def set(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, nh, T, hs) of `layer` after the tokens held; return its keys and values so far."""
        start, stop = self.length, self.length + k.size(2)
        if stop > self.capacity:
            raise ValueError(f"the cache holds {self.capacity} positions; {stop} asked (clear it first)")
        keys, values = self.layers[layer]  # (B, nh, capacity, hs): views, so narrow and copy_ write the cache
        keys.narrow(2, start, k.size(2)).copy_(k)
        values.narrow(2, start, v.size(2)).copy_(v)
        return keys.narrow(2, 0, stop), values.narrow(2, 0, stop)  # (B, nh, stop, hs) each

    def advance(self, n: int) -> None:
        self.length += n

    def clear(self) -> None:
        self.length = 0


def dropout_layer(p: float) -> nn.Module:
    """Dropout, or nothing at all when p is 0: generating calls every layer once per token, and a
    dropout that drops nothing still costs a call (7% of a tiny model's time per token)."""
    return nn.Dropout(p) if p > 0 else nn.Identity()


class CausalSelfAttention(nn.Module):
    """Multi-head masked self-attention: all heads' q, k, v from one matrix, then one output projection."""

    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.layer = layer  # this block's index: where its keys and values go in a KVCache
        self.n_head, self.dropout = config.n_head, config.dropout
        self.explicit = config.attention == "explicit"
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v of every head
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)  # writes into the residual stream
        self.resid_dropout = dropout_layer(config.dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None,
                turn: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # (B, T, C) each
        q, k, v = (split_heads(t, self.n_head) for t in (q, k, v))  # (B, nh, T, hs) each
        if turn is not None:  # rotary positions: the cos and sin of these T positions' angles
            q, k = rotate(q, *turn), rotate(k, *turn)
        if cache is not None:
            k, v = cache.set(self.layer, k, v)  # (B, nh, S, hs): the tokens read before, then these T
        y, _ = attention(q, k, v, causal=True, dropout=self.dropout if self.training else 0.0,
                         explicit=self.explicit)  # (B, nh, T, hs)
        y = merge_heads(y)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """The position-wise feed-forward network: 4x wider, GELU, back. The exact GELU (as nanoGPT), not GPT-2's
    tanh approximation: the same curve to 1e-3, and faster on CPUs without AVX-512."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)  # writes into the residual stream
        self.dropout = dropout_layer(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))  # (B, T, C)


class Block(nn.Module):
    """One pre-norm Transformer block: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None,
                turn: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache, turn)
        return x + self.mlp(self.ln_2(x))  # (B, T, C)


class GPT(LanguageModel):
    """Token + position embeddings -> n_layer blocks -> LayerNorm -> tied head. See the module docstring."""

    caches = True  # generation reads each new token once, against the keys and values cached (`new_cache`)

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = c = config
        self.window = c.block_size  # reads up to this many tokens and predicts after each
        self.wte = nn.Embedding(c.vocab_size, c.n_embd)  # token embedding E
        self.wpe = nn.Embedding(c.block_size, c.n_embd) if c.positions == "learned" else None  # positions P, learned
        if c.positions == "rotary":  # the angles of every position, computed once (not weights: not saved)
            cos, sin = rotary_tables(c.block_size, c.n_embd // c.n_head, ROTARY_BASE)
            self.register_buffer("rotary_cos", cos, persistent=False)  # (block_size, hs/2)
            self.register_buffer("rotary_sin", sin, persistent=False)
        self.drop = dropout_layer(c.dropout)
        self.h = nn.ModuleList(Block(c, layer) for layer in range(c.n_layer))
        self.ln_f = nn.LayerNorm(c.n_embd, bias=c.bias)
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # one (V, C) tensor, read at both ends
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # the residual projections: 2 per block add to the stream
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * c.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def new_cache(self, batch_size: int = 1, device: torch.device | str | None = None,
                  dtype: torch.dtype | None = None) -> KVCache:
        """An empty KVCache for the whole context, on the model's device and dtype unless told otherwise."""
        weight = self.wte.weight
        c = self.config
        cache = KVCache(c.n_layer, batch_size, c.n_head, c.block_size, c.n_embd // c.n_head,
                        device or weight.device, dtype or weight.dtype)
        cache.weights = self.reading_order()
        return cache

    def reading_order(self) -> tuple:
        """Every tensor `read_cached` reads, in its order: (wte, wpe, one tuple per block, ln_f's)."""
        blocks = tuple((b.ln_1.weight, b.ln_1.bias, b.attn.c_attn.weight, b.attn.c_attn.bias, b.attn.c_proj.weight,
                        b.attn.c_proj.bias, b.ln_2.weight, b.ln_2.bias, b.mlp.c_fc.weight, b.mlp.c_fc.bias,
                        b.mlp.c_proj.weight, b.mlp.c_proj.bias) for b in self.h)
        return self.wte.weight, None if self.wpe is None else self.wpe.weight, blocks, self.ln_f.weight, self.ln_f.bias

    def turn(self, start: int, T: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The rotary cos and sin of positions start .. start+T-1, or None with learned positions."""
        if self.wpe is not None:
            return None
        return self.rotary_cos[start:start + T], self.rotary_sin[start:start + T]

    def read_cached(self, idx: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """`forward` in evaluation with a cache, the same equations written with the functional ops on the
        model's own tensors (`reading_order`, kept by the cache): generation reads one token per call, and
        the ~50 module calls of a forward pass then cost a third of its time (dispatch, hooks, attribute
        lookups), for a 128-wide model of 4 blocks. No dropout: the model is in eval mode. Tested equal to
        forward (tests/models/test_gpt.py)."""
        c = self.config
        T, start, shape = idx.size(1), cache.length, (c.n_embd,)
        wte, wpe, blocks, ln_f_weight, ln_f_bias = cache.weights or self.reading_order()
        x = F.embedding(idx, wte)  # (B, T, C)
        if wpe is not None:
            x = x + wpe[start:start + T]
        turn = self.turn(start, T)
        for layer, (ln1_w, ln1_b, qkv_w, qkv_b, proj_w, proj_b, ln2_w, ln2_b, fc_w, fc_b, out_w, out_b) in enumerate(blocks):
            q, k, v = F.linear(F.layer_norm(x, shape, ln1_w, ln1_b, self.ln_f.eps), qkv_w, qkv_b).split(c.n_embd, dim=2)
            q, k, v = (split_heads(t, c.n_head) for t in (q, k, v))  # (B, nh, T, hs) each
            if turn is not None:
                q, k = rotate(q, *turn), rotate(k, *turn)
            k, v = cache.set(layer, k, v)  # (B, nh, S, hs)
            y, _ = attention(q, k, v, causal=True, explicit=c.attention == "explicit")
            x = x + F.linear(merge_heads(y), proj_w, proj_b)
            x = x + F.linear(F.gelu(F.linear(F.layer_norm(x, shape, ln2_w, ln2_b, self.ln_f.eps), fc_w, fc_b)), out_w, out_b)
        cache.advance(T)
        return F.linear(F.layer_norm(x, shape, ln_f_weight, ln_f_bias, self.ln_f.eps), wte)  # (B, T, V)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                state: KVCache | None = None) -> tuple[torch.Tensor, torch.Tensor | None, KVCache | None]:
        B, T = idx.shape
        start = 0 if state is None else state.length  # tokens already in the cache come first
        if start + T > self.window:
            raise ValueError(f"gpt reads at most {self.window} tokens (block_size); got {start + T}")
        if state is not None and not self.training and targets is None:  # generating: the lean path, same sums
            return self.read_cached(idx, state), None, state
        x = self.wte(idx)  # (B, T, C)
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(start, start + T, device=idx.device))
        x, turn = self.drop(x), self.turn(start, T)
        for block in self.h:
            x = block(x, state, turn)  # (B, T, C)
        if state is not None:
            state.advance(T)
        logits = self.lm_head(self.ln_f(x))  # (B, T, V)
        return logits, None if targets is None else lm_loss(logits, targets), state

    def to_hf(self) -> tuple[dict, dict[str, torch.Tensor]]:
        """This model as a Hugging Face causal LM, its config.json and its weights by name: learned positions make
        it a GPT2LMHeadModel, rotary ones a GPTNeoXForCausalLM (scratchlm/models/hf.py)."""
        from scratchlm.models.hf import to_gpt2, to_neox

        return to_gpt2(self) if self.wpe is not None else to_neox(self)
