"""Tokenizers: exact round trips (property-tested), fixed special ids, and their saved form."""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from scratchlm.data.tokenize import (
    DOC,
    SPECIALS,
    UNK,
    BPETokenizer,
    CharTokenizer,
    TokenizerSpec,
    WordTokenizer,
    encode_documents,
    tokenizer_from_json,
    train_tokenizer,
)
from scratchlm.errors import UserError

SAMPLE = "The quick brown fox jumps over the lazy dog.\nÇa va? 東京 🙂\n" * 20


def documents(*texts: str) -> list[list[str]]:
    """Documents as the corpus reader gives them: each a list of lines keeping their endings."""
    return [text.splitlines(keepends=True) for text in texts]


@cache
def bpe() -> BPETokenizer:
    """One small BPE shared by the property tests (training it per example would be slow)."""
    return train_tokenizer(documents(SAMPLE), TokenizerSpec("bpe", vocab_size=400))


def trained(kind: str) -> object:
    if kind == "bpe":
        return bpe()
    return train_tokenizer(documents(SAMPLE), TokenizerSpec(kind))


# A word is any run of non-whitespace characters: str.split() cuts at exactly the characters isspace() names.
words = st.text(st.characters(exclude_categories=("Cs",)).filter(lambda c: not c.isspace()), min_size=1, max_size=8)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_char_round_trips_any_text_in_its_vocabulary(text: str):
    tok = train_tokenizer(documents(text), TokenizerSpec("char"))
    ids = tok.encode(text)
    assert UNK not in ids
    assert tok.decode(ids) == text


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_bpe_round_trips_any_text(text: str):
    tok = bpe()
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=200, deadline=None)
@given(st.lists(words, min_size=1, max_size=20))
def test_word_round_trips_single_space_separated_words(ws: list[str]):
    text = " ".join(ws)
    tok = train_tokenizer(documents(text), TokenizerSpec("word"))
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(words, min_size=1, max_size=6), min_size=1, max_size=5))
def test_word_round_trips_lines_of_words(lines: list[list[str]]):
    text = "\n".join(" ".join(line) for line in lines) + "\n"
    tok = train_tokenizer(documents(text), TokenizerSpec("word"))
    assert tok.decode(tok.encode(text)) == text


def test_word_splits_on_whitespace_and_marks_line_ends():
    tok = train_tokenizer(documents("one two\nthree  four\r\n"), TokenizerSpec("word"))
    assert tok.decode(tok.encode("one  two\tthree\n")) == "one two three\n"  # spacing is normalised


def test_unknown_pieces_become_unk():
    char = train_tokenizer(documents("abc"), TokenizerSpec("char"))
    assert char.encode("abz🙂") == [char.stoi["a"], char.stoi["b"], UNK, UNK]
    assert char.unknown_pieces("abz🙂") == ["z", "🙂"]
    word = train_tokenizer(documents("one two"), TokenizerSpec("word"))
    assert word.encode("one zork") == [word.stoi["one"], UNK]
    assert word.unknown_pieces("one zork") == ["zork"]
    assert bpe().unknown_pieces("anything at all ☃") == []


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_specials_have_fixed_ids(kind: str):
    tok = trained(kind)
    if isinstance(tok, BPETokenizer):
        assert [tok.hf.token_to_id(s) for s in SPECIALS] == [0, 1, 2, 3, 4]
    else:
        assert tok.itos[: len(SPECIALS)] == list(SPECIALS)
        assert [tok.stoi[s] for s in SPECIALS] == [0, 1, 2, 3, 4]


def test_specials_are_not_duplicated_when_the_text_holds_them():
    tok = train_tokenizer(documents("<unk> <pad> a <doc> b"), TokenizerSpec("word"))
    assert len(tok.itos) == len(set(tok.itos))
    assert tok.encode("<doc> a") == [DOC, tok.stoi["a"]]


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
@settings(max_examples=50, deadline=None)
@given(text=st.text(max_size=80))
def test_json_round_trip_gives_the_same_ids(kind: str, text: str):
    tok = trained(kind)
    saved = json.loads(json.dumps(tok.to_json()))  # what tokenizer.json holds
    again = tokenizer_from_json(saved)
    assert type(again) is type(tok)
    assert again.vocab_size == tok.vocab_size
    assert again.encode(text) == tok.encode(text)
    assert again.to_json() == tok.to_json()


@pytest.mark.parametrize("bad", [None, [], {}, {"format": "other"}, {"format": "scratchlm-tokenizer/1", "kind": "morse"}])
def test_tokenizer_from_json_refuses_what_is_not_a_tokenizer(bad):
    with pytest.raises(UserError, match="not a scratchlm tokenizer"):
        tokenizer_from_json(bad)


def test_vocab_size_and_min_freq_keep_the_most_frequent():
    text = "a a a a b b b c c d"
    word = train_tokenizer(documents(text), TokenizerSpec("word", vocab_size=len(SPECIALS) + 2))
    assert word.itos[len(SPECIALS):] == ["a", "b"]
    word = train_tokenizer(documents(text), TokenizerSpec("word", min_freq=2))
    assert word.itos[len(SPECIALS):] == ["a", "b", "c"]


@pytest.mark.parametrize("kwargs", [{"kind": "morse"}, {"vocab_size": 3}, {"min_freq": 0}])
def test_bad_specs_are_refused(kwargs):
    with pytest.raises(UserError):
        TokenizerSpec(**kwargs)


def test_encode_documents_puts_doc_before_each_document():
    tok = train_tokenizer(documents("ab", "ba"), TokenizerSpec("char"))
    stream = np.concatenate(list(encode_documents(tok, documents("ab", "ba"))))
    a, b = tok.stoi["a"], tok.stoi["b"]
    assert stream.tolist() == [DOC, a, b, DOC, b, a]


def test_char_encode_block_matches_encode_for_astral_and_unknown_characters():
    tok = CharTokenizer(list(SPECIALS) + ["a", "🙂"])
    assert tok.encode_block("a🙂b").tolist() == [5, 6, UNK]
    assert isinstance(WordTokenizer(list(SPECIALS)).encode_block(""), np.ndarray)


@settings(max_examples=100, deadline=None)
@given(st.text())
def test_bpe_char_counts_add_up_to_the_characters_of_any_text(text: str):
    """Bits per character divides by these: a character split across byte-level tokens counts once. (A
    special's name written in the text, `<doc>`, becomes that special, which stands for no text.)"""
    assume(not any(special in text for special in SPECIALS))
    ids = bpe().encode_block(text)
    assert bpe().char_counts()[ids].sum() == len(text)


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_char_counts_add_up_to_the_characters_of_the_text(kind: str):
    tok = trained(kind)
    text = "The lazy dog.\nÇa va? 東京 🙂\nthe fox\n"  # words once each, single spaces: word round-trips it
    ids = tok.encode_block(text)
    counts = tok.char_counts()
    assert counts.shape == (tok.vocab_size,) and counts[DOC] == 0
    assert counts[ids].sum() == len(text) == len(tok.decode(ids))
    assert counts[np.concatenate([[DOC], ids])].sum() == len(text)  # a separator stands for no text
