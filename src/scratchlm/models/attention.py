"""Scaled dot-product attention, shared by every Transformer of scratchlm (gpt, transformer-mt).

Vaswani et al. 2017, "Attention Is All You Need", eq. (1), per head, with a mask M that keeps a query
from the keys it may not read (later positions, padding):

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + M) V          M_ts = 0 where t may read s, else -inf

Two paths compute it. `F.scaled_dot_product_attention` is a fused kernel (flash attention on a GPU where
it can, a blocked kernel on the CPU) that never forms the (T, S) matrix of weights; `explicit=True`
writes the equation out: slower and hungrier, but every step is visible, and it is the path that can
return the weights themselves (an attention picture). The two are tested equal.

Shapes: q (B, nh, T, hs), k and v (B, nh, S, hs): T queries over S keys, nh heads of hs dimensions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def causal_mask(T: int, S: int, device: torch.device) -> torch.Tensor:
    """(T, S) bool, True where query t may read key s: the T queries are the last T of the S positions,
    so query t sits at position S - T + t and reads keys 0 .. S - T + t."""
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=S - T)


def split_heads(x: torch.Tensor, n_head: int) -> torch.Tensor:
    """(B, T, C) -> (B, nh, T, C / nh): each head reads its own slice of the width."""
    B, T, C = x.shape
    return x.view(B, T, n_head, C // n_head).transpose(1, 2)


def merge_heads(y: torch.Tensor) -> torch.Tensor:
    """(B, nh, T, hs) -> (B, T, nh * hs): the heads side by side again."""
    B, nh, T, hs = y.shape
    return y.transpose(1, 2).contiguous().view(B, T, nh * hs)


def rotary_tables(length: int, head_size: int, base: float = 10_000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (length, head_size / 2) of the rotary position embedding (Su et al. 2021, "RoFormer",
    eq. 34): the i-th pair of a head's dimensions at position m turns by the angle m * base^(-2i / d)."""
    if head_size % 2:
        raise ValueError(f"rotary positions turn pairs of dimensions; the head size {head_size} is odd")
    frequencies = base ** (-torch.arange(0, head_size, 2, dtype=torch.float64) / head_size)  # (hs/2,)
    angles = torch.outer(torch.arange(length, dtype=torch.float64), frequencies)  # (length, hs/2)
    return angles.cos().float(), angles.sin().float()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, nh, T, hs) with each position's pairs of dimensions (x_i, x_{i + hs/2}) turned by its angles
    (cos, sin (T, hs/2), rows of `rotary_tables`): the 2-D rotations of RoFormer's eq. (34), pairing the
    halves of a head (as GPT-NeoX and Llama) rather than neighbours, the same up to an order of the
    dimensions. Queries and keys turned so give q_m . k_n = f(q, k, m - n): attention sees only how far
    apart two tokens are."""
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
              causal: bool = False, dropout: float = 0.0, explicit: bool = False,
              need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """softmax(q k^T / sqrt(hs) + M) v -> (y (B, nh, T, hs), the weights (B, nh, T, S) or None).

    mask: bool, broadcastable to (B, nh, T, S), True where a query may read a key (False at padding);
    causal: besides, query t reads keys up to S - T + t only (see `causal_mask`); dropout: on the weights
    (pass 0 outside training); the weights come back only on the explicit path, which `need_weights` takes.
    """
    T, S = q.size(-2), k.size(-2)
    if explicit or need_weights:
        if causal:
            mask = causal_mask(T, S, q.device) if mask is None else mask & causal_mask(T, S, q.device)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.size(-1)))  # (B, nh, T, S)
        if mask is not None:
            att = att.masked_fill(~mask, float("-inf"))
        att = F.softmax(att, dim=-1)
        y = (F.dropout(att, dropout) if dropout > 0 else att) @ v  # (B, nh, T, hs)
        return y, att
    # is_causal aligns its mask to the top left, which is right only when the queries are all the
    # positions (S == T); after cached tokens the queries are the last T, so pass their rows instead,
    # unless there is one query: the newest token reads every position, and needs no causal mask at all.
    is_causal = causal and S == T and mask is None
    if causal and not is_causal and T > 1:
        mask = causal_mask(T, S, q.device) if mask is None else mask & causal_mask(T, S, q.device)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, dropout_p=dropout), None
