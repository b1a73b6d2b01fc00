"""The RNN encoder-decoders: config checks, the teacher-forcing batch, the packed encoder, attention
against hand computations, forward against a loop of decode_step, scheduled sampling, and a model that
learns to reverse digit strings and then decodes them exactly."""

from __future__ import annotations

import math
import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchlm.data.tokenize import BOS, EOS, PAD
from scratchlm.decode import beam_search, greedy
from scratchlm.errors import UserError
from scratchlm.models.seq2seq import (
    BahdanauAttention,
    LuongAttention,
    Seq2Seq,
    Seq2SeqConfig,
    attend,
    masked_softmax,
    pad_batch,
    reverse_padded,
    seq2seq_loss,
    shift_right,
)

SRC_V, TGT_V = 11, 13
TOL = {"atol": 1e-5, "rtol": 1e-5}

# one per idea of the lineage, and the combinations that take other code paths
VARIANTS = {
    "sutskever": {"bidirectional": False, "reverse_source": True},
    "cho": {"feed_context": True},
    "bahdanau": {"attention": "bahdanau"},
    "bahdanau-lstm-reversed": {"attention": "bahdanau", "cell": "lstm", "reverse_source": True, "n_layers": 2},
    "dot": {"attention": "dot", "bidirectional": False},
    "general": {"attention": "general", "n_layers": 2},
    "general-input-feeding": {"attention": "general", "input_feeding": True, "cell": "lstm"},
    "lstm-tied": {"cell": "lstm", "tie_embeddings": True, "n_layers": 2},
}


def small(**overrides) -> Seq2Seq:
    settings = {"src_vocab_size": SRC_V, "tgt_vocab_size": TGT_V, "n_embed": 6, "n_hidden": 8, "dropout": 0.0,
                **overrides}
    torch.manual_seed(0)
    return Seq2Seq(Seq2SeqConfig(**settings)).eval()


def batch(lengths=(5, 2, 4), tgt_lengths=(3, 6, 1), seed=1):
    """A padded batch of random sources and targets (no specials inside the sentences)."""
    g = torch.Generator().manual_seed(seed)
    src, src_lengths = pad_batch([torch.randint(4, SRC_V, (n,), generator=g).tolist() for n in lengths])
    tgt_in, targets = shift_right([torch.randint(4, TGT_V, (n,), generator=g).tolist() for n in tgt_lengths])
    return src, src_lengths, tgt_in, targets


# ---------------------------------------------------------------- config and batches


@pytest.mark.parametrize("settings, says", [
    ({"cell": "rnn"}, "unknown cell"),
    ({"attention": "concat"}, "unknown attention"),
    ({"input_feeding": True, "attention": "bahdanau"}, "input_feeding"),
    ({"feed_context": True, "attention": "general"}, "feed_context"),
    ({"attention": "dot", "bidirectional": True}, "dot attention"),
    ({"dropout": 1.0}, "dropout"),
    ({"n_hidden": 0}, "at least 1"),
])
def test_config_rejects_what_cannot_be_built(settings, says):
    with pytest.raises(UserError, match=says):
        Seq2SeqConfig(**settings)


def test_the_vocabulary_sizes_must_come_from_the_data():
    Seq2SeqConfig()  # as the registry builds it before the task fills the sizes
    with pytest.raises(UserError, match="filled from the data"):
        Seq2Seq(Seq2SeqConfig())


def test_shift_right_puts_bos_before_the_decoder_input_and_eos_after_the_target():
    tgt_in, targets = shift_right([[7, 8, 9], [5]])
    assert tgt_in.tolist() == [[BOS, 7, 8, 9], [BOS, 5, PAD, PAD]]
    assert targets.tolist() == [[7, 8, 9, EOS], [5, EOS, PAD, PAD]]
    assert torch.equal(tgt_in[:, 1:], targets[:, :-1].masked_fill(targets[:, :-1] == EOS, PAD))  # shifted by one


@given(st.lists(st.lists(st.integers(4, 50), min_size=1, max_size=6), min_size=1, max_size=5))
def test_reverse_padded_reverses_the_real_tokens_only(sentences):
    src, lengths = pad_batch(sentences)
    flipped = reverse_padded(src, lengths)
    for row, sentence in zip(flipped.tolist(), sentences, strict=True):
        assert row == sentence[::-1] + [PAD] * (src.size(1) - len(sentence))
    assert torch.equal(reverse_padded(flipped, lengths), src)


def test_loss_ignores_the_pad_positions():
    torch.manual_seed(0)
    _, _, _, targets = batch()
    logits = torch.randn(*targets.shape, TGT_V)
    changed = logits.clone()
    changed[targets == PAD] = torch.randn_like(changed[targets == PAD]) * 100
    assert torch.equal(seq2seq_loss(logits, targets), seq2seq_loss(changed, targets))
    real = targets != PAD
    by_hand = -logits.log_softmax(-1).gather(-1, targets.clamp(min=0)[..., None])[..., 0][real].mean()
    torch.testing.assert_close(seq2seq_loss(logits, targets), by_hand)
    assert seq2seq_loss(logits.half(), targets).dtype == torch.float32


# ---------------------------------------------------------------- the model


@pytest.mark.parametrize("name", VARIANTS)
def test_shapes_and_a_finite_loss_for_every_variant(name):
    model = small(**VARIANTS[name]).train()
    src, src_lengths, tgt_in, targets = batch()
    logits, loss, attention = model(src, src_lengths, tgt_in, targets)
    B, T = tgt_in.shape
    assert logits.shape == (B, T, TGT_V)
    assert torch.isfinite(loss) and loss.dim() == 0
    if model.config.attention == "none":
        assert attention is None
    else:
        assert attention.shape == (B, T, src.size(1))
        torch.testing.assert_close(attention.sum(-1), torch.ones(B, T))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())  # every weight is in the graph


def test_tied_embeddings_are_one_tensor_through_a_projection():
    model = small(tie_embeddings=True)
    assert model.out.weight is model.tgt_embed.weight
    assert model.project is not None and model.project.weight.shape == (6, 8)  # n_hidden 8 -> n_embed 6
    assert small(tie_embeddings=True, n_embed=8).project is None


@pytest.mark.parametrize("name", VARIANTS)
def test_padding_does_not_change_what_the_encoder_computes(name):
    model = small(**VARIANTS[name])
    src, src_lengths, _, _ = batch(lengths=(5, 2, 4, 1))
    memory = model.encode(src, src_lengths)
    h0 = memory.state[0] if isinstance(memory.state, tuple) else memory.state
    for i, n in enumerate(src_lengths.tolist()):
        alone = model.encode(src[i : i + 1, :n], src_lengths[i : i + 1])
        torch.testing.assert_close(memory.outputs[i, :n], alone.outputs[0], **TOL)
        assert torch.all(memory.outputs[i, n:] == 0)
        alone_h0 = alone.state[0] if isinstance(alone.state, tuple) else alone.state
        torch.testing.assert_close(h0[:, i], alone_h0[:, 0], **TOL)
        if memory.keys is not None:
            torch.testing.assert_close(memory.keys[i, :n], alone.keys[0], **TOL)
    assert memory.mask.tolist() == [[j < n for j in range(src.size(1))] for n in src_lengths.tolist()]


def test_reverse_source_is_reading_the_reversed_sentence_with_outputs_in_source_order():
    plain, reversing = small(bidirectional=False), small(bidirectional=False, reverse_source=True)
    src, src_lengths, _, _ = batch()
    flipped = reverse_padded(src, src_lengths)
    by_hand = plain.encode(flipped, src_lengths)
    memory = reversing.encode(src, src_lengths)
    torch.testing.assert_close(memory.state, by_hand.state)
    for i, n in enumerate(src_lengths.tolist()):  # output j belongs to source token j, read n - 1 - j steps in
        torch.testing.assert_close(memory.outputs[i, :n], by_hand.outputs[i, :n].flip(0))


@pytest.mark.parametrize("name", VARIANTS)
def test_forward_equals_a_loop_of_decode_step(name):
    model = small(**VARIANTS[name])
    src, src_lengths, tgt_in, targets = batch()
    logits, _, attention = model(src, src_lengths, tgt_in, targets)
    memory = model.encode(src, src_lengths)
    state = model.init_state(memory)
    steps, rows = [], []
    for t in range(tgt_in.size(1)):
        step, state, weights = model.decode_step(tgt_in[:, t], state, memory)
        steps.append(step)
        rows.append(weights)
    torch.testing.assert_close(logits, torch.stack(steps, 1), **TOL)
    if attention is not None:
        torch.testing.assert_close(attention, torch.stack(rows, 1), **TOL)


def test_memory_and_state_select_rows():
    model = small(attention="general", input_feeding=True, cell="lstm")
    src, src_lengths, _, _ = batch()
    memory = model.encode(src, src_lengths)
    index = torch.tensor([2, 0, 0])
    picked = memory.select(index)
    assert torch.equal(picked.outputs, memory.outputs[index]) and torch.equal(picked.mask, memory.mask[index])
    assert torch.equal(picked.keys, memory.keys[index]) and torch.equal(picked.state[1], memory.state[1][:, index])
    state = model.init_state(memory)
    _, state, _ = model.decode_step(torch.full((3,), BOS), state, memory)
    moved = model.select_state(state, index)
    assert torch.equal(moved.feed, state.feed[index]) and torch.equal(moved.rnn[0], state.rnn[0][:, index])


def test_scheduled_sampling_one_feeds_the_models_own_predictions():
    model = small(attention="bahdanau")
    src, src_lengths, tgt_in, _ = batch()
    fed, _, _ = model(src, src_lengths, tgt_in, sampling=1.0)
    other = tgt_in.clone()
    other[:, 1:] = 4  # other gold tokens after BOS: never read
    assert torch.equal(fed, model(src, src_lengths, other, sampling=1.0)[0])
    memory = model.encode(src, src_lengths)  # the free-running loop, by hand
    state, y, steps = model.init_state(memory), tgt_in[:, 0], []
    for _ in range(tgt_in.size(1)):
        logits, state, _ = model.decode_step(y, state, memory)
        steps.append(logits)
        y = logits.argmax(-1)
    torch.testing.assert_close(fed, torch.stack(steps, 1), **TOL)
    assert not torch.allclose(fed, model(src, src_lengths, tgt_in)[0])


def test_scheduled_sampling_draws_per_step_reproducibly_from_the_seed():
    model = small(feed_context=True)  # a fast-path model: sampling sends it through the loop
    src, src_lengths, tgt_in, _ = batch(tgt_lengths=(6, 6, 6))
    runs = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        runs.append(model(src, src_lengths, tgt_in, sampling=0.5)[0])
    assert torch.equal(runs[0], runs[1])
    teacher, free = model(src, src_lengths, tgt_in)[0], model(src, src_lengths, tgt_in, sampling=1.0)[0]
    assert not torch.allclose(runs[0], teacher) and not torch.allclose(runs[0], free)


# ---------------------------------------------------------------- attention, by hand


def test_bahdanau_score_by_hand():
    attention = BahdanauAttention(n_query=1, n_key=1, n_attention=2)
    with torch.no_grad():
        attention.W_q.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        attention.W_k.weight.copy_(torch.tensor([[2.0], [0.5]]))
        attention.v.weight.copy_(torch.tensor([[1.0, 3.0]]))
    s, h = 0.5, torch.tensor([1.0, -2.0])  # one query, 2 source positions
    e = [math.tanh(s + 2 * hj) + 3 * math.tanh(-s + 0.5 * hj) for hj in h.tolist()]  # v^T tanh(W_q s + W_k h_j)
    memory = h.view(1, 2, 1)
    scores = attention.scores(torch.tensor([[[s]]]), attention.keys(memory))
    torch.testing.assert_close(scores, torch.tensor([[e]]))
    context, weights = attend(scores, memory, torch.tensor([[True, True]]))
    a = [math.exp(x) / sum(math.exp(y) for y in e) for x in e]
    torch.testing.assert_close(weights, torch.tensor([[a]]))
    torch.testing.assert_close(context, torch.tensor([[[a[0] * 1.0 + a[1] * -2.0]]]))


def test_luong_dot_and_general_scores_by_hand():
    query = torch.tensor([[[1.0, 2.0]]])  # (B=1, T=1, 2)
    memory = torch.tensor([[[3.0, -1.0], [0.0, 0.5]]])  # (1, S=2, 2)
    dot = LuongAttention("dot", 2, 2)
    torch.testing.assert_close(dot.scores(query, dot.keys(memory)), torch.tensor([[[1.0, 1.0]]]))  # s^T h
    general = LuongAttention("general", 2, 2)
    with torch.no_grad():
        general.W_a.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, -1.0]]))
    # s^T W h: W h_1 = (1, 1), W h_2 = (1, -0.5)
    torch.testing.assert_close(general.scores(query, general.keys(memory)), torch.tensor([[[3.0, 0.0]]]))
    context, weights = attend(torch.tensor([[[3.0, 0.0]]]), memory, torch.tensor([[True, True]]))
    a = torch.tensor([math.exp(3) / (math.exp(3) + 1), 1 / (math.exp(3) + 1)])
    torch.testing.assert_close(weights[0, 0], a)
    torch.testing.assert_close(context[0, 0], a[0] * memory[0, 0] + a[1] * memory[0, 1])


def test_luong_attentional_vector_by_hand():
    model = small(attention="dot", bidirectional=False, n_hidden=1)
    with torch.no_grad():
        model.readout.weight.copy_(torch.tensor([[2.0, -1.0]]))  # W_c over [c; h]
        model.readout.bias.zero_()
    c, h = torch.tensor([[[0.5]]]), torch.tensor([[[0.25]]])
    torch.testing.assert_close(model._readout(h, None, c), torch.tensor([[[math.tanh(2 * 0.5 - 0.25)]]]))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=4), st.integers(0, 2**16))
def test_masked_weights_are_zero_on_pad_and_sum_to_one(lengths, seed):
    S = max(lengths) + 1
    scores = torch.randn(len(lengths), 3, S, generator=torch.Generator().manual_seed(seed)) * 10
    mask = torch.arange(S)[None] < torch.tensor(lengths)[:, None]
    weights = masked_softmax(scores, mask)
    assert torch.all(weights[~mask[:, None, :].expand_as(weights)] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(len(lengths), 3))


def test_attention_in_the_model_never_looks_at_padding():
    model = small(attention="bahdanau")
    src, src_lengths, tgt_in, _ = batch()
    _, _, attention = model(src, src_lengths, tgt_in)
    pad = (src == PAD)[:, None, :].expand_as(attention)
    assert torch.all(attention[pad] == 0)


# ---------------------------------------------------------------- it learns


def reversal_strings(n: int, seed: int) -> list[list[int]]:
    """Random strings of 3-7 digits; the 10 digits are the ids after the specials."""
    g = torch.Generator().manual_seed(seed)
    return [(torch.randint(0, 10, (int(torch.randint(3, 8, (1,), generator=g)),), generator=g) + 5).tolist()
            for _ in range(n)]


@pytest.fixture(scope="module")
def reverser() -> tuple[Seq2Seq, float]:
    """A small Bahdanau model trained to reverse digit strings: (model, seconds of training)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = Seq2SeqConfig(src_vocab_size=15, tgt_vocab_size=15, n_embed=32, n_hidden=64, attention="bahdanau",
                           dropout=0.0)
    model = Seq2Seq(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    start = time.perf_counter()
    for step in range(600):
        sentences = reversal_strings(64, seed=1000 + step)
        src, src_lengths = pad_batch(sentences)
        tgt_in, targets = shift_right([s[::-1] for s in sentences])
        _, loss, _ = model(src, src_lengths, tgt_in, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss.item() < 0.005:  # converged: after some 200 steps, 5-7 s on one thread
            break
    return model, time.perf_counter() - start


def test_attention_model_learns_to_reverse_strings_exactly(reverser):
    model, seconds = reverser
    assert seconds < 30
    sentences = reversal_strings(200, seed=1)  # fresh: training drew from other seeds
    src, src_lengths = pad_batch(sentences)
    hyps = greedy(model, src, src_lengths, max_len=2 * src_lengths + 10)
    exact = sum(h == s[::-1] for h, s in zip(hyps, sentences, strict=True)) / len(sentences)
    assert exact >= 0.95
    beams = beam_search(model, src, src_lengths, beam=3, max_len=20)
    assert sum(b[0][0] == s[::-1] for b, s in zip(beams, sentences, strict=True)) / len(sentences) >= 0.95
    assert model.training  # decoding left the mode as it found it


def test_the_trained_attention_looks_at_the_mirrored_position(reverser):
    model, _ = reverser
    sentences = [[5, 6, 7, 8, 9, 10, 11]]
    src, src_lengths = pad_batch(sentences)
    hyps, rows = greedy(model, src, src_lengths, max_len=10, attention=True)
    assert hyps[0] == sentences[0][::-1]
    assert rows[0].shape == (7, 7)
    assert rows[0].argmax(-1).tolist() == list(range(6, -1, -1))  # the alignment is the anti-diagonal


def test_dropout_and_training_mode_do_not_break_the_step_loop():
    model = small(attention="bahdanau", dropout=0.5).train()
    src, src_lengths, tgt_in, targets = batch()
    _, loss, _ = model(src, src_lengths, tgt_in, targets, sampling=0.25)
    loss.backward()
    assert torch.isfinite(loss)
