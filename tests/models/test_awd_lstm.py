"""AWD-LSTM's regularizers: each dropout is the identity in eval mode and does what its name says in
training; the tied weights are one tensor; the loss adds AR and TAR in training only; the weights
survive a safetensors round trip."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from scratchlm.checkpoint import load_weights, save_weights
from scratchlm.errors import UserError
from scratchlm.models.awd_lstm import AWDLSTM, AWDLSTMConfig, EmbeddingDropout, LockedDropout, WeightDropout
from scratchlm.models.base import lm_loss

VOCAB = 13
ALL_ON = {"embed_p": 0.3, "input_p": 0.3, "hidden_p": 0.3, "weight_p": 0.5, "output_p": 0.3}
ALL_OFF = dict.fromkeys(ALL_ON, 0.0)


def build(seed: int = 0, **overrides) -> AWDLSTM:
    torch.manual_seed(seed)
    return AWDLSTM(AWDLSTMConfig(vocab_size=VOCAB, n_embed=8, n_hidden=12, n_layers=3, **{**ALL_ON, **overrides}))


def tokens(B: int = 3, T: int = 7, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (B, T), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- each dropout on its own


def test_locked_dropout_shares_one_mask_over_time():
    drop = LockedDropout(0.5)
    torch.manual_seed(0)
    out = drop(torch.ones(4, 9, 16))
    assert torch.equal(out, out[:, :1].expand_as(out))  # every time step: the same mask as the first
    assert set(out.unique().tolist()) == {0.0, 2.0}  # dropped, or kept and scaled by 1/(1-p)
    assert not torch.equal(out[0], out[1])  # ... but a mask of its own for each sequence
    x = torch.randn(4, 9, 16)
    assert drop.eval()(x) is x


def test_embedding_dropout_drops_whole_words():
    emb = EmbeddingDropout(VOCAB, 6, p=0.5)
    idx = torch.arange(VOCAB).repeat(3, 1)  # (3, V): every word, in three rows
    torch.manual_seed(0)
    out = emb(idx)  # (3, V, 6)
    dropped = (out == 0).all(-1)  # (3, V): which words were dropped, where they appear
    assert dropped.any() and not dropped.all()
    assert torch.equal(dropped, dropped[:1].expand_as(dropped))  # a dropped word is dropped everywhere
    kept = ~dropped[0]
    torch.testing.assert_close(out[0, kept], emb.weight[kept] * 2)  # the rest scaled by 1/(1-p)
    assert torch.equal(emb.eval()(idx), emb.weight[idx])


def test_weight_dropout_drops_the_recurrent_weights_in_training_only():
    torch.manual_seed(0)
    lstm = nn.LSTM(4, 6, batch_first=True)
    wrapped = WeightDropout(lstm, ("weight_hh_l0",), p=0.5)
    x = torch.randn(2, 5, 4)

    with torch.no_grad():
        plain = lstm(x)[0]
        # With a zero initial state, the first step never reads W_hh: it matches the undropped module;
        # the later steps read a dropped W_hh and do not.
        out = wrapped.train()(x)[0]
    torch.testing.assert_close(out[:, 0], plain[:, 0])
    assert not torch.allclose(out[:, 1:], plain[:, 1:])

    with torch.no_grad():
        wrapped.eval()
        assert torch.equal(wrapped(x)[0], plain) and torch.equal(wrapped(x)[0], wrapped(x)[0])


def test_weight_dropout_trains_the_raw_weight_and_keeps_the_module_whole():
    torch.manual_seed(0)
    lstm = nn.LSTM(4, 6, batch_first=True)
    raw = lstm.weight_hh_l0
    wrapped = WeightDropout(lstm, ("weight_hh_l0",), p=0.5).train()
    wrapped(torch.randn(2, 5, 4))[0].pow(2).sum().backward()
    assert raw.grad is not None and raw.grad.abs().sum() > 0
    assert (raw.grad == 0).any()  # the dropped entries got no gradient this step
    assert lstm.weight_hh_l0 is raw and isinstance(raw, nn.Parameter)  # put back after the call
    assert set(wrapped.state_dict()) == {f"module.{k}" for k in nn.LSTM(4, 6).state_dict()}


def test_weight_dropout_raises_no_warnings():
    model = build()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.train()
        _, loss, _ = model(tokens(), tokens(seed=2))
        loss.backward()
        model.eval()
        model(tokens())


# ---------------------------------------------------------------- the whole model


def test_eval_mode_is_deterministic_and_every_dropout_is_the_identity():
    on, off = build(), build(**ALL_OFF)
    off.load_state_dict(on.state_dict())
    on.eval(), off.eval()
    idx = tokens()
    torch.testing.assert_close(on(idx)[0], off(idx)[0], rtol=0, atol=0)
    torch.testing.assert_close(on(idx)[0], on(idx)[0], rtol=0, atol=0)


def test_training_mode_is_noisy():
    model = build().train()
    idx = tokens()
    assert not torch.equal(model(idx)[0], model(idx)[0])


def test_tied_weights_are_one_tensor():
    model = build()
    assert model.decoder.weight is model.encoder.weight
    names = [name for name, _ in model.named_parameters()]
    assert "encoder.weight" in names and "decoder.weight" not in names  # counted, and decayed, once
    untied = build(tie_weights=False)
    assert untied.decoder.weight is not untied.encoder.weight


def test_training_loss_is_cross_entropy_plus_ar_plus_tar():
    model = build(**{**ALL_OFF, "output_p": 0.5}, alpha=2.0, beta=1.0).train()
    captured = {}
    model.rnns[-1].register_forward_hook(lambda module, args, out: captured.update(raw=out[0]))
    model.output_drop.register_forward_hook(lambda module, args, out: captured.update(dropped=out))
    idx, targets = tokens(), tokens(seed=2)
    logits, loss, _ = model(idx, targets)
    raw, dropped = captured["raw"], captured["dropped"]  # (B, T, E): the last layer's outputs, then dropped
    assert not torch.equal(raw, dropped)
    ar = 2.0 * dropped.pow(2).mean()  # AR on the dropped outputs
    tar = 1.0 * (raw[:, 1:] - raw[:, :-1]).pow(2).mean()  # TAR on the undropped ones
    torch.testing.assert_close(loss, lm_loss(logits, targets) + ar + tar)

    plain = build(alpha=0.0, beta=0.0).train()
    logits, loss, _ = plain(idx, targets)
    torch.testing.assert_close(loss, lm_loss(logits, targets))
    model.eval()  # what evaluation measures: the cross-entropy alone
    logits, loss, _ = model(idx, targets)
    torch.testing.assert_close(loss, lm_loss(logits, targets))


def test_one_token_batches_have_no_tar_term():
    model = build().train()
    _, loss, _ = model(tokens(T=1), tokens(T=1, seed=2))
    assert torch.isfinite(loss)


def test_state_is_one_h_and_c_per_layer_and_carries_on():
    model = build().eval()
    idx = tokens(B=2, T=5)
    _, _, state = model(idx)
    assert [tuple(s.shape) for s in state] == [(1, 2, 12), (1, 2, 12)] * 2 + [(1, 2, 8), (1, 2, 8)]
    # Reading 5 tokens then 5 more, carrying the state, is reading the 10 at once.
    both = torch.cat([idx, tokens(B=2, T=5, seed=3)], dim=1)
    whole = model(both)[0]
    second = model(both[:, 5:], state=state)[0]
    torch.testing.assert_close(second, whole[:, 5:], rtol=1e-5, atol=1e-5)


def test_saved_weights_load_into_a_fresh_model(tmp_path: Path):
    model = build(seed=0)
    model.train()
    model(tokens(), tokens(seed=2))[1].backward()  # a training step's forward leaves nothing behind
    path = tmp_path / "model.safetensors"
    save_weights(path, model, step=1)
    fresh = build(seed=123)
    idx = tokens()
    assert not torch.equal(fresh.eval()(idx)[0], model.eval()(idx)[0])
    load_weights(path, fresh)
    assert fresh.decoder.weight is fresh.encoder.weight  # still tied after loading
    torch.testing.assert_close(fresh(idx)[0], model(idx)[0], rtol=0, atol=0)


def test_drop_mult_scales_every_dropout():
    model = build(drop_mult=0.5)
    assert model.encoder.p == pytest.approx(0.15) and model.rnns[0].p == pytest.approx(0.25)
    assert model.input_drop.p == model.hidden_drop.p == model.output_drop.p == pytest.approx(0.15)
    with pytest.raises(UserError, match="weight_p"):
        AWDLSTMConfig(weight_p=0.5, drop_mult=2.0)
    with pytest.raises(UserError):
        AWDLSTMConfig(alpha=-1.0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_weight_dropout_runs_on_cudnn_quietly():
    model = build().cuda()
    idx, targets = tokens().cuda(), tokens(seed=2).cuda()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.train()
        model(idx, targets)[1].backward()
        model.eval()
        first = model(idx)[0]
    assert torch.equal(first, model(idx)[0])
    assert model.rnns[0].module.weight_hh_l0.grad is not None
