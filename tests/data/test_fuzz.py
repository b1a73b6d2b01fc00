"""Property tests on arbitrary input: the readers and tokenizers never fail but with a UserError, and
round-trip where they promise to (char and BPE: any text; word: words between single spaces).

The example counts are part of the benchmark record (bench/reliability.py counts them).
"""

from __future__ import annotations

import codecs
import json
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from scratchlm.data.read import open_corpus
from scratchlm.data.tokenize import (
    FORMAT,
    UNK,
    TokenizerSpec,
    tokenizer_from_file,
    tokenizer_from_json,
    train_tokenizer,
)
from scratchlm.errors import UserError

FILES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
TEXTS = settings(max_examples=150, deadline=None)
BPE = settings(max_examples=40, deadline=None)  # each example trains a BPE vocabulary

# Bytes that look like text in some way: BOMs, NULs, UTF-8 sequences cut short, latin-1, line endings.
FRAGMENTS = st.sampled_from([codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE,
                             b"\x00", b"\r\n", b"\r", b"\n", "é".encode(), "é".encode()[:1], "日本".encode(),
                             "café".encode("latin-1"), "ü".encode("utf-16-le"), b" ", b"word"])
BYTES = st.one_of(st.binary(max_size=400), st.lists(FRAGMENTS, max_size=40).map(b"".join))


def expected_text(data: bytes, encoding: str) -> str:
    return data.decode(encoding)  # "utf-8-sig", "utf-16", "utf-32" drop their byte-order mark, as reading does


@FILES
@given(data=BYTES)
@example(data=b"")
@example(data=codecs.BOM_UTF16_LE)
@example(data=b"\xff\xfe\x00")  # a UTF-16 BOM and half a character
def test_reading_any_bytes_gives_their_text_or_a_clear_error(tmp_path: Path, data: bytes):
    path = tmp_path / "any.txt"
    path.write_bytes(data)
    try:
        corpus = open_corpus(str(path))
        text = "".join("".join(lines) for lines in corpus.texts())
    except UserError as e:
        assert str(path) in str(e) and "\n" not in str(e)
        return
    assert text == expected_text(data, corpus.sources[0].encoding)


@FILES
@given(data=BYTES, encoding=st.sampled_from(["utf-8", "latin-1", "utf-16", "cp1252", "ascii"]))
def test_reading_with_a_given_encoding_decodes_or_names_the_file(tmp_path: Path, data: bytes, encoding: str):
    path = tmp_path / "any.txt"
    path.write_bytes(data)
    try:
        text = "".join("".join(lines) for lines in open_corpus(str(path), encoding).texts())
    except UserError as e:
        assert str(path) in str(e)
        return
    assert text == data.decode(encoding)


@TEXTS
@given(text=st.text(min_size=1))
@example(text="\r\n\r")
@example(text="<unk> <doc>")
@example(text="\x1c\x85\u2028 a")  # characters that end a line for str.splitlines
def test_char_tokenizer_round_trips_any_text(text: str):
    tokenizer = train_tokenizer([[text]], TokenizerSpec("char"))
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert UNK not in tokenizer.encode(text)


@TEXTS
@given(seen=st.text(), unseen=st.text())
def test_char_tokenizer_on_text_it_never_saw(seen: str, unseen: str):
    """Unknown characters become <unk> one for one, and are reported; known ones come back."""
    tokenizer = train_tokenizer([[seen]], TokenizerSpec("char"))
    ids = tokenizer.encode(unseen)
    assert len(ids) == len(unseen)
    assert sorted(set(unseen) - set(seen)) == tokenizer.unknown_pieces(unseen)
    for char, i in zip(unseen, ids, strict=True):
        assert tokenizer.itos[i] == char if char in seen else i == UNK


WORD = st.text(st.characters(blacklist_categories=["Z", "C"]), min_size=1, max_size=8)
LINES = st.lists(st.lists(WORD, min_size=1, max_size=6).map(" ".join), min_size=1, max_size=6)


@TEXTS
@given(lines=LINES)
def test_word_tokenizer_round_trips_single_spaced_lines(lines: list[str]):
    text = "\n".join(lines) + "\n"
    tokenizer = train_tokenizer([[text]], TokenizerSpec("word"))
    assert tokenizer.decode(tokenizer.encode(text)) == text


@TEXTS
@given(text=st.text())
def test_word_tokenizer_keeps_the_words_of_any_text(text: str):
    tokenizer = train_tokenizer([[text]], TokenizerSpec("word"))
    assert tokenizer.decode(tokenizer.encode(text)).split() == text.split()


@BPE
@given(text=st.text(min_size=1, max_size=300), other=st.text(max_size=100))
@example(text="a", other="日本語 🙂")
def test_bpe_round_trips_any_text_even_unseen(text: str, other: str):
    """Byte-level: text it was trained on and text it never saw both come back exactly."""
    tokenizer = train_tokenizer([[text]], TokenizerSpec("bpe", vocab_size=300))
    for sample in (text, other):
        assert tokenizer.decode(tokenizer.encode(sample)) == sample
    again = tokenizer_from_json(json.loads(json.dumps(tokenizer.to_json())))
    assert again.encode(other) == tokenizer.encode(other)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
                    max_leaves=12)
TOKENIZER_LIKE = st.fixed_dictionaries({"format": st.just(FORMAT), "kind": st.sampled_from(["char", "word", "bpe"])},
                                       optional={"tokens": JSON | st.lists(st.text(max_size=3), max_size=8),
                                                 "tokenizer": JSON})


@TEXTS
@given(obj=st.one_of(JSON, TOKENIZER_LIKE))
def test_a_tokenizer_json_of_any_shape_loads_or_is_refused(obj):
    try:
        tokenizer = tokenizer_from_json(obj)
    except UserError as e:
        assert "not a scratchlm tokenizer" in str(e)
        return
    tokenizer.decode(tokenizer.encode("some text"))  # what loads, works


@FILES
@given(data=st.binary(max_size=200))
def test_a_tokenizer_file_of_any_bytes_loads_or_names_the_file(tmp_path: Path, data: bytes):
    path = tmp_path / "tokenizer.json"
    path.write_bytes(data)
    try:
        tokenizer_from_file(path)
    except UserError as e:
        assert str(e).startswith(f"{path}: ")
