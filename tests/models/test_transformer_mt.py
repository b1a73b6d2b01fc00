"""The encoder-decoder Transformer: its config, shapes, masks (padding never read, the future never read),
the explicit attention equal to the fused kernel, cached decoding equal to recomputing the prefix, beam 1
equal to greedy, the inverse-square-root schedule, bf16 autocast, a reversal task learnt exactly, and a
run trained, used and raced against the RNNs through the CLI."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import scratchlm
from scratchlm.cli import main
from scratchlm.data.tokenize import BOS, EOS, PAD
from scratchlm.decode import beam_search, greedy
from scratchlm.errors import UserError
from scratchlm.models.registry import REGISTRY, get_spec
from scratchlm.models.seq2seq import pad_batch, shift_right
from scratchlm.models.transformer_mt import TransformerMT, TransformerMTConfig, sinusoids
from scratchlm.tasks.translation import attention_rows
from scratchlm.trainer import TrainConfig, lr_at

V = 17
TOL = {"atol": 1e-5, "rtol": 1e-5}
VARIANTS = {
    "pre-sinusoidal-tied": {},
    "post-norm": {"norm": "post"},
    "learned-positions": {"positions": "learned", "block_size": 32},
    "tied-output-only": {"tie_embeddings": "output"},
    "untied": {"tie_embeddings": "none", "joint_vocab": False, "tgt_vocab_size": V + 4},
}


def small(**overrides) -> TransformerMT:
    settings = {"src_vocab_size": V, "tgt_vocab_size": V, "joint_vocab": True, "n_encoder_layers": 2,
                "n_decoder_layers": 2, "n_head": 4, "n_embd": 32, "n_ffn": 64, "dropout": 0.0, **overrides}
    torch.manual_seed(0)
    return TransformerMT(TransformerMTConfig(**settings)).eval()


def batch(lengths=(5, 2, 4), tgt_lengths=(3, 6, 1), seed=1, vocab=V):
    """A padded batch of random sources and targets (no specials inside the sentences)."""
    g = torch.Generator().manual_seed(seed)
    src, src_lengths = pad_batch([torch.randint(5, V, (n,), generator=g).tolist() for n in lengths])
    tgt_in, targets = shift_right([torch.randint(5, vocab, (n,), generator=g).tolist() for n in tgt_lengths])
    return src, src_lengths, tgt_in, targets


# ---------------------------------------------------------------- config


@pytest.mark.parametrize("settings, says", [
    ({"norm": "middle"}, "unknown norm"),
    ({"positions": "rotary"}, "unknown positions"),
    ({"tie_embeddings": "some"}, "unknown tie_embeddings"),
    ({"attention": "sparse"}, "unknown attention"),
    ({"n_embd": 30, "n_head": 4}, "multiple of n_head"),
    ({"n_decoder_layers": 0}, "at least 1"),
    ({"dropout": 1.0}, "dropout"),
    ({"label_smoothing": 1.0}, "label_smoothing"),
    ({"joint_vocab": False}, "needs one vocabulary for both"),
])
def test_config_rejects_what_cannot_be_built(settings, says):
    with pytest.raises(UserError, match=says):
        TransformerMTConfig(**{"joint_vocab": True, **settings})


def test_the_registry_entry_is_the_known_good_recipe():
    spec = get_spec("transformer-mt")
    config = spec.make_config({"src_vocab_size": 8000, "tgt_vocab_size": 8000, "joint_vocab": True})
    assert (config.norm, config.n_encoder_layers, config.n_decoder_layers, config.n_embd) == ("pre", 3, 3, 256)
    assert (config.tie_embeddings, config.label_smoothing) == ("all", 0.1)
    assert spec.train["schedule"] == "invsqrt" and spec.task == "translation"
    # a dim the config has no field for is left out: seq2seq never shares embeddings across languages
    assert not hasattr(get_spec("seq2seq").make_config({"src_vocab_size": 9, "tgt_vocab_size": 9, "joint_vocab": True}),
                       "joint_vocab")


# ---------------------------------------------------------------- the model


def test_embeddings_are_scaled_from_small_draws_and_tied_across_both_languages_and_the_output():
    model = small(n_embd=64, n_head=4)
    assert model.src_embed is model.tgt_embed and model.out.weight is model.src_embed.weight
    assert model.src_embed.weight.std().item() == pytest.approx(64 ** -0.5, rel=0.1)
    x = model.embed(torch.arange(5, V)[None], model.src_embed, None)  # sqrt(d) E + P: unit variance + 1/2
    assert x.var().item() == pytest.approx(1.5, rel=0.25)
    assert small(tie_embeddings="output").src_embed is not small(tie_embeddings="output").tgt_embed


def test_sinusoids_by_hand():
    pe = sinusoids(torch.arange(4), 6)
    for pos in range(4):
        for i in range(3):
            assert pe[pos, 2 * i].item() == pytest.approx(math.sin(pos / 10000 ** (2 * i / 6)), abs=1e-6)
            assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(pos / 10000 ** (2 * i / 6)), abs=1e-6)


@pytest.mark.parametrize("name", VARIANTS)
def test_shapes_and_a_finite_loss_for_every_variant(name):
    model = small(**VARIANTS[name]).train()
    src, src_lengths, tgt_in, targets = batch(vocab=model.config.tgt_vocab_size)
    logits, loss, attention = model(src, src_lengths, tgt_in, targets)
    assert logits.shape == (3, tgt_in.size(1), model.config.tgt_vocab_size) and attention is None
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters())


def test_post_norm_ends_each_sublayer_with_its_norm_and_has_no_final_one():
    model = small(norm="post")
    assert isinstance(model.encoder_norm, torch.nn.Identity) and not model.encoder[0].r_attn.pre
    x = torch.randn(2, 3, 32)
    out = model.encoder[0].r_ffn.after(x, torch.randn(2, 3, 32))
    assert out.mean(-1).abs().max() < 1e-5  # a LayerNorm's output (gain 1, bias 0 at init)


def test_the_loss_is_label_smoothed_cross_entropy_over_real_tokens():
    model = small(label_smoothing=0.1)
    src, src_lengths, tgt_in, targets = batch()
    logits, loss, _ = model(src, src_lengths, tgt_in, targets)
    logp = F.log_softmax(logits.float(), -1)
    real = targets != PAD
    nll = -logp.gather(-1, targets[..., None])[..., 0][real]
    uniform = -logp.mean(-1)[real]  # eps spread evenly over the vocabulary
    assert loss.item() == pytest.approx((0.9 * nll + 0.1 * uniform).mean().item(), rel=1e-5)


def test_the_rnn_translators_take_label_smoothing_too():
    from scratchlm.models.seq2seq import Seq2Seq, Seq2SeqConfig

    torch.manual_seed(0)
    model = Seq2Seq(Seq2SeqConfig(src_vocab_size=V, tgt_vocab_size=V, n_embed=8, n_hidden=8, label_smoothing=0.2))
    src, src_lengths, tgt_in, targets = batch()
    logits, loss, _ = model.eval()(src, src_lengths, tgt_in, targets)
    expected = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=PAD, label_smoothing=0.2)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_padding_is_never_read():
    """Other ids in the padded positions, or more padding, change nothing at the real positions."""
    model = small()
    src, src_lengths, tgt_in, targets = batch()
    logits, _, _ = model(src, src_lengths, tgt_in, targets)
    noisy = torch.where(src == PAD, torch.randint(5, V, src.shape), src)
    wider = F.pad(noisy, (0, 3), value=PAD)
    for other in (noisy, wider):
        again, _, _ = model(other, src_lengths, tgt_in, targets)
        real = targets != PAD
        torch.testing.assert_close(again[real], logits[real], **TOL)
        memory = model.encode(other, src_lengths)
        for i, n in enumerate(src_lengths.tolist()):
            torch.testing.assert_close(memory.outputs[i, :n], model.encode(src, src_lengths).outputs[i, :n], **TOL)
    _, _, weights = model.decode(tgt_in, model.encode(wider, src_lengths), need_weights=True)  # (B, T, L, nh, S)
    pad = (torch.arange(wider.size(1))[None] >= src_lengths[:, None])[:, None, None, None, :].expand_as(weights)
    assert torch.all(weights[pad] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones_like(weights.sum(-1)), **TOL)


def test_a_target_position_never_reads_the_ones_after_it():
    model = small()
    src, src_lengths, tgt_in, _ = batch()
    logits, _, _ = model(src, src_lengths, tgt_in)
    changed = tgt_in.clone()
    changed[:, 2:] = torch.randint(5, V, changed[:, 2:].shape)
    again, _, _ = model(src, src_lengths, changed)
    torch.testing.assert_close(again[:, :2], logits[:, :2], **TOL)
    assert not torch.allclose(again[:, 2:], logits[:, 2:])


@pytest.mark.parametrize("train", [False, True])
def test_the_explicit_attention_equals_the_fused_kernel(train: bool):
    fused, explicit = small(), small(attention="explicit")
    explicit.load_state_dict(fused.state_dict())
    fused.train(train), explicit.train(train)  # dropout 0: training mode differs only in the kernel's path
    src, src_lengths, tgt_in, targets = batch()
    a, loss_a, _ = fused(src, src_lengths, tgt_in, targets)
    b, loss_b, _ = explicit(src, src_lengths, tgt_in, targets)
    torch.testing.assert_close(a, b, **TOL)
    torch.testing.assert_close(loss_a, loss_b, **TOL)


def uncached_greedy(model: TransformerMT, src, src_lengths, steps: int) -> tuple[list[list[int]], torch.Tensor]:
    """Greedy decoding that reruns the decoder over the whole prefix at every step: no KV cache."""
    memory = model.encode(src, src_lengths)
    prefix = torch.full((src.size(0), 1), BOS)
    last = []
    for _ in range(steps):
        logits, _, _ = model.decode(prefix, memory)  # every position again
        last.append(logits[:, -1])
        prefix = torch.cat([prefix, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return prefix[:, 1:].tolist(), torch.stack(last, 1)


@pytest.mark.parametrize("name", ["pre-sinusoidal-tied", "post-norm", "learned-positions"])
def test_cached_decoding_gives_the_tokens_of_recomputing_the_prefix(name):
    model = small(**VARIANTS[name])
    src, src_lengths, _, _ = batch(lengths=(6, 3, 5, 1), tgt_lengths=(1, 1, 1, 1), seed=4)
    with torch.no_grad():
        tokens, logits = uncached_greedy(model, src, src_lengths, 9)
        memory, state, cached = model.encode(src, src_lengths), None, []
        state = model.init_state(memory)
        y = torch.full((4,), BOS)
        for _ in range(9):
            step, state, _ = model.decode_step(y, state, memory)
            cached.append(step)
            y = step.argmax(-1)
    assert state.length == 9 and state.keys[0].shape == (4, 4, 9, 8)  # (B, nh, t, hs): the cache holds every step
    torch.testing.assert_close(torch.stack(cached, 1), logits, **TOL)
    found = greedy(model, src, src_lengths, max_len=9)
    assert found == [t[: t.index(EOS)] if EOS in t else t for t in tokens]


def test_beam_one_is_greedy():
    model = small()
    src, src_lengths, _, _ = batch(lengths=(6, 3, 5, 1, 7), tgt_lengths=(1,) * 5, seed=7)
    beams = beam_search(model, src, src_lengths, 1, 12, length_penalty=0.0)
    assert [b[0][0] for b in beams] == greedy(model, src, src_lengths, 12)


def test_memory_and_state_select_rows():
    model = small()
    src, src_lengths, _, _ = batch()
    memory = model.encode(src, src_lengths)
    _, state, _ = model.decode_step(torch.full((3,), BOS), model.init_state(memory), memory)
    index = torch.tensor([2, 2, 0])
    picked, state_picked = memory.select(index), model.select_state(state, index)
    assert torch.equal(picked.keys[1][0], memory.keys[1][2]) and torch.equal(picked.mask[2], memory.mask[0])
    assert torch.equal(state_picked.values[0][1], state.values[0][2]) and state_picked.length == 1


def test_learned_positions_refuse_a_sentence_longer_than_their_table():
    model = small(positions="learned", block_size=4)
    src, src_lengths, _, _ = batch(lengths=(5, 2, 4))
    with pytest.raises(UserError, match="at most 4 tokens"):
        model.encode(src, src_lengths)


def test_scheduled_sampling_is_refused():
    model = small()
    src, src_lengths, tgt_in, targets = batch()
    with pytest.raises(UserError, match="scheduled sampling"):
        model(src, src_lengths, tgt_in, targets, sampling=0.5)


def test_bf16_autocast_trains_and_decodes():
    model = small(dropout=0.1).train()
    src, src_lengths, tgt_in, targets = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, loss, _ = model(src, src_lengths, tgt_in, targets)
        assert logits.dtype == torch.bfloat16
    loss.backward()
    assert torch.isfinite(loss)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hyps, rows = greedy(model, src, src_lengths, 6, attention=True)
        beams = beam_search(model, src, src_lengths, 3, 6)
    assert len(hyps) == len(beams) == 3 and rows[0].shape[1:] == (2, 4, 5)


# ---------------------------------------------------------------- the schedule


def test_invsqrt_rises_over_the_warmup_then_falls_as_one_over_the_root():
    cfg = TrainConfig(epochs=1, lr=1e-3, schedule="invsqrt", warmup=0.04)
    assert lr_at(0.0, cfg) == 0.0 and lr_at(0.02, cfg) == pytest.approx(5e-4)
    assert lr_at(0.04, cfg) == pytest.approx(1e-3)  # the peak
    assert lr_at(0.16, cfg) == pytest.approx(5e-4)  # 4x the warm-up: half the peak
    assert lr_at(1.0, cfg) == pytest.approx(2e-4) and lr_at(2.0, cfg) == lr_at(1.0, cfg)
    with pytest.raises(UserError, match="needs a --warmup above 0"):
        TrainConfig(epochs=1, schedule="invsqrt", warmup=0)


# ---------------------------------------------------------------- it learns


def reversal_strings(n: int, seed: int) -> list[list[int]]:
    """Random strings of 3-7 digits; the 10 digits are the ids after the specials."""
    g = torch.Generator().manual_seed(seed)
    return [(torch.randint(0, 10, (int(torch.randint(3, 8, (1,), generator=g)),), generator=g) + 5).tolist()
            for _ in range(n)]


@pytest.fixture(scope="module")
def reverser() -> tuple[TransformerMT, int]:
    """A small Transformer trained to reverse digit strings: (model, steps taken)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = TransformerMT(TransformerMTConfig(src_vocab_size=15, tgt_vocab_size=15, joint_vocab=True, n_encoder_layers=2,
                                              n_decoder_layers=2, n_head=4, n_embd=64, n_ffn=128, dropout=0.0,
                                              label_smoothing=0.0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    cfg = TrainConfig(epochs=1, lr=2e-3, schedule="invsqrt", warmup=0.1)
    for step in range(600):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step / 600, cfg)
        sentences = reversal_strings(64, seed=1000 + step)
        src, src_lengths = pad_batch(sentences)
        tgt_in, targets = shift_right([s[::-1] for s in sentences])
        _, loss, _ = model(src, src_lengths, tgt_in, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss.item() < 0.005:
            break
    return model, step + 1


def test_the_transformer_learns_to_reverse_strings_exactly(reverser):
    model, steps = reverser
    assert steps < 600  # converged before the last step
    sentences = reversal_strings(200, seed=1)  # fresh: training drew from other seeds
    src, src_lengths = pad_batch(sentences)
    hyps = greedy(model, src, src_lengths, max_len=2 * src_lengths + 10)
    assert sum(h == s[::-1] for h, s in zip(hyps, sentences, strict=True)) / len(sentences) >= 0.95
    beams = beam_search(model, src, src_lengths, beam=3, max_len=20)
    assert sum(b[0][0] == s[::-1] for b, s in zip(beams, sentences, strict=True)) / len(sentences) >= 0.95
    assert model.training  # decoding left the mode as it found it


def test_attention_rows_pick_a_layer_and_head_or_their_mean(reverser):
    model, _ = reverser
    src, src_lengths = pad_batch([[5, 6, 7, 8, 9, 10, 11]])
    hyps, rows = greedy(model, src, src_lengths, max_len=10, attention=True)
    weights = rows[0].numpy()
    assert weights.shape == (7, 2, 4, 7)  # (target, layers, heads, source)
    mean, title = attention_rows(weights)
    assert np.allclose(mean, weights[:, 1].mean(1)) and title == "cross-attention, layer 2 of 2, mean of 4 heads"
    assert np.array_equal(attention_rows(weights, 1, 3)[0], weights[:, 0, 2])
    with pytest.raises(UserError, match="layers 1 to 2"):
        attention_rows(weights, 3)
    with pytest.raises(UserError, match="one attention"):
        attention_rows(weights[:, 0, 0], 1)


# ---------------------------------------------------------------- through the CLI

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SETTINGS = ["--set", "n_embd=32", "--set", "n_ffn=64", "--set", "n_encoder_layers=2", "--set", "n_decoder_layers=2",
            "--set", "dropout=0.0"]


@pytest.fixture(scope="module")
def toy_tsv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A toy language pair: the target is the source's words in reverse order, capitalised."""
    rng = random.Random(0)
    lines = []
    for _ in range(600):
        words = [rng.choice(WORDS) for _ in range(rng.randint(2, 6))]
        lines.append(f"{' '.join(words)}\t{' '.join(w.upper() for w in reversed(words))}\n")
    path = tmp_path_factory.mktemp("pairs") / "toy.tsv"
    path.write_text("".join(lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def toy_run(toy_tsv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tmt"
    assert main(["train", "--data", str(toy_tsv), "--model", "transformer-mt", "--tokenizer", "word", "--epochs", "25",
                 "--batch-size", "32", "--lr", "5e-3", "--warmup", "0.1", "--out", str(out), "--quiet", *SETTINGS]) == 0
    return out


def test_the_cli_trains_translates_evaluates_and_draws_cross_attention(toy_run: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture):
    capsys.readouterr()
    config = json.loads((toy_run / "config.json").read_text())
    assert config["model"]["config"]["joint_vocab"] is True and config["train"]["schedule"] == "invsqrt"
    assert main(["translate", str(toy_run), "one two three", "four five", "--beam", "3",
                 "--attention-map", str(tmp_path / "a.png"), "--attention-layer", "1", "--attention-head", "2"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ["THREE TWO ONE", "FIVE FOUR"]
    assert (tmp_path / "a.png").read_bytes().startswith(b"\x89PNG") and "attention map" in err
    assert main(["translate", str(toy_run), "six seven eight", "--attention-map", str(tmp_path / "mean.png")]) == 0
    assert capsys.readouterr()[0].splitlines() == ["EIGHT SEVEN SIX"]
    assert main(["eval", str(toy_run), "--json"]) == 0
    held = json.loads(capsys.readouterr()[0])
    assert held["bleu"] > 60 and held["sentences"] >= 100
    assert main(["eval", str(toy_run), "--beam", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr()[0])["bleu"] >= held["bleu"] - 5
    run = scratchlm.load(toy_run, device="cpu")
    assert run.translate(["nine one"], beam=2) == ["ONE NINE"]


def test_models_lists_the_transformer(capsys: pytest.CaptureFixture):
    assert main(["models"]) == 0
    line = next(line for line in capsys.readouterr()[0].splitlines() if line.startswith("transformer-mt "))
    assert "translation" in line and "Vaswani" in line
    assert main(["models", "transformer-mt"]) == 0
    shown = capsys.readouterr()[0]
    assert "label_smoothing" in shown and "--schedule invsqrt" in shown and "--cooldown 0.2" in shown


def test_bad_inputs_are_one_line(toy_tsv: Path, toy_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    train = ["train", "--data", str(toy_tsv), "--model", "transformer-mt", "--tokenizer", "word", "--epochs", "1",
             "--out", str(tmp_path / "new"), *SETTINGS]
    cases = [
        (train + ["--set", "n_layers=2"], "--set 'n_layers=2': expected KEY=VALUE"),
        (train + ["--set", "norm=middle"], "norm=middle: not a valid value"),
        (train + ["--no-joint"], "tie_embeddings=all shares one embedding"),
        (train + ["--warmup", "0"], "--schedule invsqrt needs a --warmup above 0"),
        (["translate", str(toy_run), "one", "--attention-map", str(tmp_path / "x.png"), "--attention-layer", "3"],
         "--attention-layer 3: the decoder has layers 1 to 2"),
        (["translate", str(toy_run), "one", "--attention-map", str(tmp_path / "x.png"), "--attention-head", "9"],
         "--attention-head 9: each layer has heads 1 to 4"),
        (["translate", str(toy_run), "one", "--attention-head", "1"], "give it too"),
        (["ladder", "--task", "poetry"], "invalid choice: 'poetry'"),
        (["ladder", "--task", "lm", "--models", "transformer-mt"], "transformer-mt is not a language-model model"),
    ]
    for argv, fragment in cases:
        code = main(argv)
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert code == 2, (argv, err)
        assert len(lines) == 1 and lines[0].startswith("scratchlm: error: ") and fragment in lines[0], (argv, err)
        assert out == "" and "Traceback" not in err
    assert not (tmp_path / "new").exists() and not (tmp_path / "x.png").exists()


def test_the_ladder_races_every_translation_model_under_one_budget(toy_tsv: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture):
    out = tmp_path / "ladder"
    assert main(["ladder", "--task", "translation", "--data", str(toy_tsv), "--tokenizer", "word", "--time", "2s",
                 "--out", str(out), "--quiet"]) == 0
    table = capsys.readouterr()[0].split("\n\n")[0].splitlines()
    assert table[0].split() == ["rung", "parameters", "bleu", "chrf", "accuracy", "seconds", "tokens/s"]
    names = [spec for spec, entry in REGISTRY.items() if entry.task == "translation"]
    assert [line.split()[0] for line in table[1:]] == names and "transformer-mt" in names
    rows = json.loads((out / "ladder.json").read_text())
    assert all(row["seconds"] >= 2 for row in rows)  # the same budget for each, stopped at the first step past it
    assert (out / "ladder.png").read_bytes().startswith(b"\x89PNG") and "| transformer-mt |" in (out / "ladder.md").read_text()


def test_resume_continues_exactly(toy_tsv: Path, tmp_path: Path):
    """One epoch, then a second by --resume: the weights of two epochs straight (a constant rate without the
    recipe's cooldown, since a schedule follows the run's length, which the resumed run changes), dropout's
    draws included."""
    settings = {"n_embd": 16, "n_ffn": 32, "n_encoder_layers": 1, "n_decoder_layers": 1, "dropout": 0.1}
    options = dict(tokenizer="word", batch_size=32, schedule="constant", cooldown=0.0, settings=settings)
    straight = scratchlm.train(str(toy_tsv), "transformer-mt", tmp_path / "straight", epochs=2, **options)
    scratchlm.train(str(toy_tsv), "transformer-mt", tmp_path / "resumed", epochs=1, **options)
    resumed = scratchlm.train(out=tmp_path / "resumed", resume=True, epochs=2)
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert [r["valid_loss"] for r in straight.metrics] == [r["valid_loss"] for r in resumed.metrics]


def test_one_vocabulary_each_ties_the_target_embedding_to_the_output_only(toy_tsv: Path, tmp_path: Path):
    run = scratchlm.train(str(toy_tsv), "transformer-mt", tmp_path / "split", tokenizer="word", joint=False, epochs=1,
                          settings={"n_embd": 16, "n_ffn": 32, "tie_embeddings": "output"})
    assert run.config["model"]["config"]["joint_vocab"] is False
    assert run.model.src_embed is not run.model.tgt_embed and run.model.out.weight is run.model.tgt_embed.weight
    # two vocabularies of one size (10 words and the specials each side), which alone would not tell them apart
    assert run.model.config.src_vocab_size == run.model.config.tgt_vocab_size
    assert isinstance(run.translate(["one two"])[0], str)
