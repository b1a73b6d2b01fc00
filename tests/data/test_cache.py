"""The token cache: a second read of the same text is a cache hit; changed text is a new entry."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from scratchlm.data import cache
from scratchlm.data.cache import default_cache_dir, tokenize_corpus
from scratchlm.data.pipeline import DataConfig, load_lm_data
from scratchlm.data.read import open_corpus
from scratchlm.data.tokenize import DOC, TokenizerSpec


def entries(cache_dir: Path) -> list[Path]:
    return sorted(p for p in cache_dir.iterdir()) if cache_dir.exists() else []


def no_training(*args, **kwargs):
    raise AssertionError("the tokenizer was trained again: the cache was missed")


def test_default_cache_dir_follows_the_environment(cache_dir: Path, monkeypatch: pytest.MonkeyPatch):
    assert default_cache_dir() == cache_dir
    monkeypatch.delenv("SCRATCHLM_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere")
    assert default_cache_dir() == Path("/somewhere/scratchlm")


def test_second_read_is_a_cache_hit(text_file: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch):
    spec = TokenizerSpec("char")
    tok1, ids1, _ = tokenize_corpus(open_corpus(str(text_file)), spec)
    assert ids1[0] == DOC and isinstance(ids1, np.memmap)
    assert len(entries(cache_dir)) == 1

    monkeypatch.setattr(cache, "train_tokenizer", no_training)
    monkeypatch.setattr(cache, "encode_documents", no_training)
    tok2, ids2, _ = tokenize_corpus(open_corpus(str(text_file)), spec)
    assert np.array_equal(ids1, ids2)
    assert tok2.to_json() == tok1.to_json()
    assert len(entries(cache_dir)) == 1


def test_a_moved_copy_of_a_file_is_a_cache_hit(text_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    _, ids1, _ = tokenize_corpus(open_corpus(str(text_file)), TokenizerSpec("char"))
    copy = shutil.copy(text_file, tmp_path / "elsewhere.txt")
    monkeypatch.setattr(cache, "train_tokenizer", no_training)
    _, ids2, _ = tokenize_corpus(open_corpus(str(copy)), TokenizerSpec("char"))
    assert np.array_equal(ids1, ids2)


def test_changed_file_gets_a_new_entry(text_file: Path, cache_dir: Path):
    _, ids1, _ = tokenize_corpus(open_corpus(str(text_file)), TokenizerSpec("char"))
    text_file.write_text(text_file.read_text() + "one more line\n")
    _, ids2, _ = tokenize_corpus(open_corpus(str(text_file)), TokenizerSpec("char"))
    assert len(ids2) == len(ids1) + len("one more line\n")
    assert len(entries(cache_dir)) == 2


def test_another_tokenizer_or_encoding_gets_a_new_entry(text_file: Path, cache_dir: Path):
    tokenize_corpus(open_corpus(str(text_file)), TokenizerSpec("char"))
    tokenize_corpus(open_corpus(str(text_file)), TokenizerSpec("word"))
    tokenize_corpus(open_corpus(str(text_file)), TokenizerSpec("char", min_freq=2))
    tokenize_corpus(open_corpus(str(text_file), encoding="latin-1"), TokenizerSpec("char"))
    assert len(entries(cache_dir)) == 4


def test_a_given_tokenizer_is_used_as_it_is(text_file: Path, tmp_path: Path):
    tok, _, _ = tokenize_corpus(open_corpus(str(text_file)), TokenizerSpec("char"))
    other = tmp_path / "other.txt"
    other.write_text("hello zzz\n")
    same, ids, _ = tokenize_corpus(open_corpus(str(other)), tok)
    assert same.to_json() == tok.to_json()
    assert ids.tolist() == [DOC] + tok.encode("hello zzz\n")


def test_failed_tokenizing_leaves_no_entry(text_file: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch):
    def broken(tokenizer, documents):
        yield np.array([DOC])
        raise KeyboardInterrupt

    monkeypatch.setattr(cache, "encode_documents", broken)
    with pytest.raises(KeyboardInterrupt):
        tokenize_corpus(open_corpus(str(text_file)), TokenizerSpec("char"))
    assert entries(cache_dir) == []


def test_pipeline_splits_the_end_off_for_validation(text_file: Path):
    text = text_file.read_text()
    data = load_lm_data(DataConfig(path=str(text_file), tokenizer=TokenizerSpec("char")))
    stream = np.concatenate([data.train_ids, data.valid_ids[1:]])  # they share the token at the cut
    assert data.train_ids[-1] == data.valid_ids[0]
    assert data.tokenizer.decode(stream[1:]) == text
    assert len(data.valid_ids) == pytest.approx(0.1 * len(stream), abs=2)
