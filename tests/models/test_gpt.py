"""The GPT family: its config and presets, attention against the equation, the KV cache, generation and
scoring through the cache, and a run trained and used end to end through the CLI."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from scratchlm.data.tokenize import DOC
from scratchlm.errors import UserError
from scratchlm.generate import context_start, generate_ids, token_logprobs
from scratchlm.models.attention import causal_mask, rotary_tables, rotate
from scratchlm.models.gpt import GPT, PRESETS, GPTConfig, KVCache
from scratchlm.models.registry import get_spec, parse_settings
from scratchlm.run import Run

VOCAB = 23
TEXT = "hello world, this is a tiny text.\nanother line here; and more text!\n" * 40


def small(**overrides) -> GPT:
    settings = {"vocab_size": VOCAB, "block_size": 16, "n_layer": 2, "n_head": 4, "n_embd": 32, **overrides}
    torch.manual_seed(0)
    return GPT(GPTConfig(**settings)).eval()


# ---------------------------------------------------------------- config


def test_presets_fill_only_the_fields_left_unset():
    assert GPTConfig().block_size == PRESETS["tiny"]["block_size"]
    config = GPTConfig(preset="shakespeare-char", dropout=0.0)
    assert (config.n_layer, config.n_head, config.n_embd, config.block_size) == (6, 6, 384, 256)
    assert config.dropout == 0.0  # given: kept over the preset's 0.2
    again = GPTConfig(**vars(config))  # as config.json rebuilds it: every field given
    assert again == config


def test_gpt2_preset_is_124m_parameters():
    with torch.device("meta"):  # no memory, no initialisation time
        model = GPT(GPTConfig(preset="gpt2", vocab_size=50257))
    assert sum(p.numel() for p in model.parameters()) == 124_439_808  # GPT-2 small, with its 1024 positions


@pytest.mark.parametrize("settings, match", [
    ({"preset": "gpt-5"}, "unknown preset"),
    ({"n_embd": 30, "n_head": 4}, "multiple of n_head"),
    ({"dropout": 1.0}, "dropout"),
    ({"n_layer": 0}, "at least 1"),
    ({"attention": "sparse"}, "unknown attention"),
    ({"positions": "alibi"}, "unknown positions"),
    ({"positions": "rotary", "n_embd": 12, "n_head": 4}, "head size n_embd / n_head = 3 must be even"),
])
def test_bad_settings_are_refused(settings: dict, match: str):
    with pytest.raises(UserError, match=match):
        GPTConfig(**settings)


def test_settings_parse_from_the_command_line():
    spec = get_spec("gpt")
    assert parse_settings(spec, ["n_layer=1", "bias=true", "attention=explicit", "preset=gpt2", "dropout=none"]) == {
        "n_layer": 1, "bias": True, "attention": "explicit", "preset": "gpt2", "dropout": None}


# ---------------------------------------------------------------- the model


def test_gpt2_initialisation_and_tied_head():
    model = small(n_layer=8, n_embd=64)
    assert model.lm_head.weight is model.wte.weight
    residual = torch.cat([b.attn.c_proj.weight.flatten() for b in model.h] + [b.mlp.c_proj.weight.flatten() for b in model.h])
    assert residual.std().item() == pytest.approx(0.02 / math.sqrt(2 * 8), rel=0.05)
    assert model.h[0].mlp.c_fc.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.wpe.weight.std().item() == pytest.approx(0.02, rel=0.1)


def test_causal_mask_rows_are_the_last_positions():
    assert causal_mask(3, 3, torch.device("cpu")).tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    assert causal_mask(2, 4, torch.device("cpu")).tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]


@pytest.mark.parametrize("train", [False, True])
def test_fused_attention_equals_the_equation(train: bool):
    fused = small()
    explicit = small(attention="explicit")
    explicit.load_state_dict(fused.state_dict())
    fused.train(train), explicit.train(train)  # dropout 0: training mode differs only in the kernel's path
    idx = torch.randint(0, VOCAB, (3, 16))
    a, loss_a, _ = fused(idx, idx)
    b, loss_b, _ = explicit(idx, idx)
    torch.testing.assert_close(a, b)
    loss_a.backward(), loss_b.backward()
    torch.testing.assert_close(fused.h[0].attn.c_attn.weight.grad, explicit.h[0].attn.c_attn.weight.grad)


def test_a_position_reads_only_the_past():
    model = small()
    idx = torch.randint(0, VOCAB, (1, 16))
    changed = idx.clone()
    changed[0, 9] = (idx[0, 9] + 1) % VOCAB
    a, b = model(idx)[0], model(changed)[0]
    torch.testing.assert_close(a[:, :9], b[:, :9])
    assert not torch.allclose(a[:, 9:], b[:, 9:])


def test_reads_up_to_its_context_and_no_further():
    model = small()
    for T in (1, 7, 16):
        assert model(torch.zeros(2, T, dtype=torch.long))[0].shape == (2, T, VOCAB)
    with pytest.raises(ValueError, match="at most 16 tokens"):
        model(torch.zeros(2, 17, dtype=torch.long))


# ---------------------------------------------------------------- the KV cache


def test_rotary_queries_and_keys_meet_by_their_distance_alone():
    """RoFormer's property: the score of a query at m and a key at n depends on m - n only, and the
    turn keeps each vector's length."""
    cos, sin = rotary_tables(40, 8)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(m: int, n: int) -> torch.Tensor:
        return (rotate(q, cos[m:m + 1], sin[m:m + 1]) * rotate(k, cos[n:n + 1], sin[n:n + 1])).sum()

    torch.testing.assert_close(score(7, 3), score(30, 26))
    torch.testing.assert_close(score(5, 5), (q * k).sum())  # no distance: no turn between them
    assert not torch.allclose(score(7, 3), score(7, 4))
    torch.testing.assert_close(rotate(q, cos[9:10], sin[9:10]).norm(), q.norm())


def test_a_rotary_gpt_has_no_position_table_and_saves_no_angles():
    model = small(positions="rotary")
    assert model.wpe is None and "rotary_cos" not in model.state_dict()  # computed, never saved
    assert model.rotary_cos.shape == (16, 4)  # block_size x half of the head size 32 / 4
    assert model.to_hf()[0]["model_type"] == "gpt_neox"  # Hugging Face's GPT with rotary positions


@pytest.mark.parametrize("positions", ["learned", "rotary"])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("attention", ["fused", "explicit"])
def test_cached_steps_give_the_logits_of_one_full_pass(attention: str, bias: bool, positions: str):
    """The cached steps take GPT.read_cached (functional ops on the same tensors), the full pass the modules."""
    model = small(attention=attention, bias=bias, positions=positions)
    if bias:  # trained biases and norms, not their zeros and ones: each must be read where it belongs
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("bias") or ".ln_" in name or name.startswith("ln_f"):
                    p.add_(torch.randn_like(p) * 0.1)
    idx = torch.randint(0, VOCAB, (2, 16))
    full, _, state = model(idx)
    assert state is None  # no cache passed, none returned: training is unchanged
    cache = model.new_cache(2)
    pieces = []
    for a, b in ((0, 5), (5, 6), (6, 11), (11, 16)):  # a prompt, one token, a few, to the end of the context
        logits, _, returned = model(idx[:, a:b], state=cache)
        assert returned is cache and cache.length == b
        pieces.append(logits)
    torch.testing.assert_close(torch.cat(pieces, dim=1), full)
    with pytest.raises(ValueError, match="at most 16"):
        model(idx[:, :1], state=cache)  # full
    cache.clear()
    torch.testing.assert_close(model(idx, state=cache)[0], full)  # cleared, it is reused from position 0


def test_kv_cache_set_appends_and_refuses_to_overflow():
    cache = KVCache(n_layer=2, batch_size=1, n_head=1, capacity=4, head_size=2)
    k, v = cache.set(0, torch.ones(1, 1, 3, 2), torch.full((1, 1, 3, 2), 2.0))
    assert k.shape == v.shape == (1, 1, 3, 2) and cache.length == 0  # the model advances once all layers wrote
    cache.advance(3)
    k, v = cache.set(0, torch.zeros(1, 1, 1, 2), torch.zeros(1, 1, 1, 2))
    assert k[0, 0, :, 0].tolist() == [1, 1, 1, 0]
    cache.advance(1)
    with pytest.raises(ValueError, match="holds 4 positions"):
        cache.set(0, torch.zeros(1, 1, 1, 2), torch.zeros(1, 1, 1, 2))


# ---------------------------------------------------------------- generation and scoring


@pytest.mark.parametrize("seed", [0, 1])
def test_cached_and_uncached_generation_give_the_same_tokens(seed: int):
    model = small()
    prompt = [DOC, 3, 4, 5]
    sample = lambda **kw: list(generate_ids(model, prompt, 40, model.window, temperature=1.0, top_k=10, seed=seed, **kw))
    cached = sample()
    assert len(cached) == 40  # past the 16-token context: the window slides instead of overflowing
    assert cached == sample(use_cache=False)
    greedy = list(generate_ids(model, prompt, 30, model.window))
    assert greedy == list(generate_ids(model, prompt, 30, model.window, use_cache=False))


def test_context_jumps_to_its_newest_half_when_full():
    assert [context_start(0, n, 16) for n in (1, 15, 16)] == [0, 0, 0]
    assert context_start(0, 17, 16) == 9  # 8 ids kept: the newest half, the new one included
    assert context_start(9, 24, 16) == 9 and context_start(9, 26, 16) == 18
    assert context_start(0, 2, 1) == 1 and context_start(3, 10, 5) == 7  # an odd window keeps the larger half
    for window in (1, 2, 5, 16):
        start = 0
        for length in range(1, 100):
            start = context_start(start, length, window)
            assert (window + 1) // 2 <= length - start <= window or length < (window + 1) // 2


def test_generation_reads_the_argmax_of_its_context():
    model = small()
    ids, start = [DOC, 1, 2], 0
    for token in generate_ids(model, ids, 40, model.window):
        assert token == int(model(torch.tensor([ids[start:]]))[0][0, -1].argmax())
        ids = ids + [token]
        start = context_start(start, len(ids), model.window)


@pytest.mark.parametrize("positions", ["learned", "rotary"])
@pytest.mark.parametrize("attention", ["fused", "explicit"])
def test_long_generation_past_the_context_is_the_same_with_and_without_the_cache(attention: str, positions: str):
    model = small(attention=attention, positions=positions)
    prompt = [DOC] + [i % VOCAB for i in range(20)]  # longer than the context: cropped, then 10 jumps
    sample = lambda **kw: list(generate_ids(model, prompt, 200, model.window, temperature=0.9, top_p=0.95,
                                            penalty=1.1, seed=5, **kw))
    with pytest.warns(UserWarning, match="longer than the model's context"):
        cached = sample()
    with pytest.warns(UserWarning, match="longer than the model's context"):
        assert cached == sample(use_cache=False)


def test_the_cache_reads_a_half_window_per_half_window_of_tokens():
    model = small()
    read = []
    model.register_forward_pre_hook(lambda module, args, kwargs: read.append(args[0].size(1)), with_kwargs=True)
    list(generate_ids(model, [DOC, 1, 2], 100, model.window))
    assert read[0] == 3 and sum(read) < 2 * 103  # the old policy read 16 tokens per step once full: ~1,500
    assert sorted(set(read)) == [1, 3, 8]


def test_a_prompt_longer_than_the_context_is_cropped_with_a_warning():
    model = small()
    prompt = [DOC] + [i % VOCAB for i in range(30)]
    with pytest.warns(UserWarning, match="longer than the model's context of 16"):
        long = list(generate_ids(model, prompt, 10, model.window, temperature=1.0, seed=3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert long == list(generate_ids(model, prompt[-16:], 10, model.window, temperature=1.0, seed=3))


def test_logprobs_read_in_context_sized_chunks():
    model = small()
    ids = [DOC] + torch.randint(0, VOCAB, (16,)).tolist()  # 16 predictions: one chunk
    full = model(torch.tensor([ids[:-1]]))[0][0].log_softmax(-1)
    expected = full.gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]
    torch.testing.assert_close(token_logprobs(model, ids, model.window), expected)

    long = [DOC] + torch.randint(0, VOCAB, (50,)).tolist()
    logprobs = token_logprobs(model, long, model.window)
    assert logprobs.shape == (50,) and torch.isfinite(logprobs).all() and (logprobs < 0).all()
    first = model(torch.tensor([long[:16]]))[0][0].log_softmax(-1).gather(-1, torch.tensor(long[1:17])[:, None])[:, 0]
    torch.testing.assert_close(logprobs[:16], first)  # the first context, exactly
    last = model(torch.tensor([long[-17:-1]]))[0][0, -1].log_softmax(-1)[long[-1]]
    torch.testing.assert_close(logprobs[-1], last)  # the last token, with a whole context before it


# ---------------------------------------------------------------- end to end through the CLI

def run_cli(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m scratchlm ARGS` in a subprocess on one thread (see conftest.py) and on the CPU, as test_cli.py
    runs it: its output is compared with the Python API's on the CPU."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8", "MPLBACKEND": "Agg",
           "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, "-m", "scratchlm", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, encoding="utf-8", timeout=300)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


TINY = ["--set", "n_layer=1", "--set", "n_head=2", "--set", "n_embd=32", "--set", "block_size=16", "--bptt", "16"]


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("gpt")
    data = folder / "small.txt"
    data.write_text(TEXT, encoding="utf-8")
    result = ok(run_cli("train", "--data", data, "--model", "gpt", *TINY, "--batch-size", "8", "--epochs", "5",
                        "--lr", "3e-3", "--out", folder / "run", "--quiet", cwd=folder))
    assert "gpt: final accuracy" in result.stdout
    return folder / "run"


def test_gpt_trains_generates_and_scores_through_the_cli(gpt_run: Path, tmp_path: Path):
    run = Run.load(gpt_run, device="cpu")
    assert run.window == 16 and run.config["model"]["config"]["block_size"] == 16
    assert run.metrics[-1]["valid_loss"] < math.log(run.tokenizer.vocab_size) - 0.5  # it learnt something
    text = ok(run_cli("generate", gpt_run, "--prompt", "hello", "--tokens", "40", "--temperature", "0.8",
                      "--seed", "1", cwd=tmp_path)).stdout
    assert text == "hello" + run.generate("hello", tokens=40, temperature=0.8, seed=1) + "\n"
    real, scrambled = "another line here", "rehe enil rehtona"
    table = ok(run_cli("score", gpt_run, real, scrambled, cwd=tmp_path)).stdout.splitlines()
    assert table[0].split() == ["logprob", "perplexity", "tokens", "text"]
    scores = run.score([real, scrambled])
    assert scores[0]["logprob"] > scores[1]["logprob"]


def test_cli_stop_and_repetition_penalty(gpt_run: Path, tmp_path: Path):
    run = Run.load(gpt_run, device="cpu")
    free = run.generate("hello", tokens=60)
    stop = free[20:23]
    expected = free[:free.find(stop)]
    assert run.generate("hello", tokens=60, stop=[stop]) == expected
    assert run.generate("hello", tokens=60, stop=["never there", stop]) == expected
    assert run.generate("hello", tokens=60, stop=["\u00a7"]) == free  # a stop string that never comes
    out = ok(run_cli("generate", gpt_run, "--prompt", "hello", "--tokens", "60", "--stop", stop, cwd=tmp_path)).stdout
    assert out == "hello" + expected + "\n"
    penalized = ok(run_cli("generate", gpt_run, "--prompt", "hello", "--tokens", "60", "--repetition-penalty", "1.5",
                           cwd=tmp_path)).stdout
    assert penalized == "hello" + run.generate("hello", tokens=60, repetition_penalty=1.5) + "\n"


def test_cli_warns_in_one_line_when_the_prompt_is_cropped(gpt_run: Path, tmp_path: Path):
    copy = tmp_path / "run"
    shutil.copytree(gpt_run, copy)
    result = ok(run_cli("generate", copy, "--prompt", "hello world, this is a tiny text.", "--tokens", "5",
                        cwd=tmp_path))
    assert result.stderr.strip().splitlines() == [
        "scratchlm: warning: the prompt is 33 tokens, longer than the model's context of 16; only its last 16 are read"]
    result = run_cli("generate", copy, "--repetition-penalty", "0", cwd=tmp_path)
    assert result.returncode == 2 and "--repetition-penalty" in result.stderr


def test_the_ladder_races_the_gpt_rung_on_human_numbers(tmp_path: Path):
    out = tmp_path / "ladder"
    result = ok(run_cli("ladder", "--data", "human-numbers", "--models", "mlp3,gpt", "--time", "2s", "--out", out,
                        "--quiet", cwd=tmp_path))
    rows = {row["rung"]: row for row in json.loads((out / "ladder.json").read_text())}
    assert list(rows) == ["mlp3", "gpt"] and "gpt" in result.stdout
    assert 0 < rows["gpt"]["accuracy"] <= 1
    run = Run.load(out / "gpt", device="cpu")
    assert run.window == 64  # the registry's context, an ordinary run
    config = run.config["model"]["config"]  # the recipe sized to human numbers: the ladder's width, two layers
    assert (config["n_layer"], config["n_embd"]) == (2, 64) and rows["gpt"]["parameters"] == 104_960
