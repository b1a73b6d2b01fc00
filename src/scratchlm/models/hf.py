"""The gpt rung as Hugging Face writes its two nearest models, so that `transformers` loads it with equal logits.

GPT-2 (GPT2LMHeadModel): the architectures are the same (learned positions, pre-norm blocks, a 4x MLP, a tied
head), so the mapping is names and one transpose: GPT-2 keeps its linear layers as `Conv1D`, weights stored
(in, out). GPT-NeoX (GPTNeoXForCausalLM): the same blocks with rotary positions (its `rotate_half` pairs the
halves of a head, as `attention.rotate`), in sequence (use_parallel_residual false), and its q, k, v weights
grouped by head ([q k v] of head 0, then head 1, ...) where gpt keeps all heads' q, then k, then v. Both:
where gpt has no biases (bias=False), theirs are zeros; the GELU is the exact one used here ("gelu", not
GPT-2's default tanh approximation "gelu_new"); the head is tied, so only the embedding is written
(tie_word_embeddings).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from scratchlm.data.tokenize import DOC, EOS, PAD

if TYPE_CHECKING:
    from scratchlm.models.gpt import GPT

Weights = dict[str, torch.Tensor]


def to_gpt2(model: GPT) -> tuple[dict, Weights]:
    """A gpt with learned positions as GPT2LMHeadModel: its config.json and its weights."""
    c = model.config
    config = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_positions": c.block_size,
              "n_embd": c.n_embd, "n_layer": c.n_layer, "n_head": c.n_head, "n_inner": 4 * c.n_embd,
              "activation_function": "gelu", "resid_pdrop": c.dropout, "embd_pdrop": c.dropout,
              "attn_pdrop": c.dropout, "layer_norm_epsilon": model.ln_f.eps, "scale_attn_weights": True,
              **common_config(model)}
    weights = {"transformer.wte.weight": model.wte.weight, "transformer.wpe.weight": model.wpe.weight,
               **norm("transformer.ln_f", model.ln_f)}
    for i, block in enumerate(model.h):
        p = f"transformer.h.{i}"
        weights |= {**norm(f"{p}.ln_1", block.ln_1), **norm(f"{p}.ln_2", block.ln_2),
                    **linear(f"{p}.attn.c_attn", block.attn.c_attn, transpose=True),
                    **linear(f"{p}.attn.c_proj", block.attn.c_proj, transpose=True),
                    **linear(f"{p}.mlp.c_fc", block.mlp.c_fc, transpose=True),
                    **linear(f"{p}.mlp.c_proj", block.mlp.c_proj, transpose=True)}
    return config, plain(weights)


def to_neox(model: GPT) -> tuple[dict, Weights]:
    """A gpt with rotary positions as GPTNeoXForCausalLM: its config.json and its weights."""
    from scratchlm.models.gpt import ROTARY_BASE

    c = model.config
    config = {"architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox", "hidden_size": c.n_embd,
              "num_hidden_layers": c.n_layer, "num_attention_heads": c.n_head,
              "intermediate_size": 4 * c.n_embd, "hidden_act": "gelu", "max_position_embeddings": c.block_size,
              "rope_parameters": {"rope_type": "default", "rope_theta": ROTARY_BASE, "partial_rotary_factor": 1.0},
              "attention_dropout": c.dropout, "hidden_dropout": c.dropout, "layer_norm_eps": model.ln_f.eps,
              "use_parallel_residual": False, "attention_bias": True, **common_config(model)}
    head_size = c.n_embd // c.n_head

    def by_head(t: torch.Tensor) -> torch.Tensor:  # rows [q | k | v] (3C, ...) -> [q_0 k_0 v_0 | q_1 ...]
        return t.reshape(3, c.n_head, head_size, *t.shape[1:]).transpose(0, 1).reshape(t.shape)

    weights = {"gpt_neox.embed_in.weight": model.wte.weight, **norm("gpt_neox.final_layer_norm", model.ln_f)}
    for i, block in enumerate(model.h):
        p = f"gpt_neox.layers.{i}"
        qkv = linear(f"{p}.attention.query_key_value", block.attn.c_attn)
        weights |= {**norm(f"{p}.input_layernorm", block.ln_1), **norm(f"{p}.post_attention_layernorm", block.ln_2),
                    **{name: by_head(t) for name, t in qkv.items()},
                    **linear(f"{p}.attention.dense", block.attn.c_proj),
                    **linear(f"{p}.mlp.dense_h_to_4h", block.mlp.c_fc),
                    **linear(f"{p}.mlp.dense_4h_to_h", block.mlp.c_proj)}
    return config, plain(weights)


def common_config(model: GPT) -> dict:
    return {"vocab_size": model.config.vocab_size, "initializer_range": 0.02, "tie_word_embeddings": True,
            "use_cache": True, "bos_token_id": DOC, "eos_token_id": EOS, "pad_token_id": PAD}


def norm(prefix: str, ln: nn.LayerNorm) -> Weights:
    """A LayerNorm's gain and bias (zeros where it has none)."""
    bias = torch.zeros_like(ln.weight) if ln.bias is None else ln.bias
    return {f"{prefix}.weight": ln.weight, f"{prefix}.bias": bias}


def linear(prefix: str, layer: nn.Linear, transpose: bool = False) -> Weights:
    """A linear layer's weight (transposed for GPT-2's Conv1D) and bias (zeros where it has none)."""
    bias = layer.weight.new_zeros(layer.out_features) if layer.bias is None else layer.bias
    return {f"{prefix}.weight": layer.weight.t() if transpose else layer.weight, f"{prefix}.bias": bias}


def plain(weights: Weights) -> Weights:
    return {name: t.detach().cpu().contiguous() for name, t in weights.items()}
