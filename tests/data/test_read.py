"""Reading text: encodings, folders, and every way a --data argument can be refused."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchlm.data import read
from scratchlm.data.human_numbers import human_numbers_text, number_to_words
from scratchlm.data.read import Source, open_corpus
from scratchlm.errors import UserError

# Long enough, and natural enough, for charset-normalizer to tell cp1252 from its Baltic and Central
# European cousins (a one-line French sentence is read as cp1257: detection is statistics).
WESTERN = ("Il était une fois, dans un château très éloigné, une princesse qui s'appelait Hélène. "
           "Elle aimait beaucoup les fêtes, les gâteaux et les chansons de Noël. "
           "Un jour, un garçon arriva à la cour du roi.\n") * 3


def text_of(corpus) -> list[str]:
    return ["".join(source.lines()) for source in corpus.sources]


def test_utf8_file(tmp_path: Path):
    text = "naïve café, 東京, emoji 🙂\nsecond line\n"
    path = tmp_path / "utf8.txt"
    path.write_bytes(text.encode("utf-8"))
    corpus = open_corpus(str(path))
    assert [s.encoding for s in corpus.sources] == ["utf-8"]
    assert text_of(corpus) == [text]


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1"])
def test_western_single_byte_file_is_detected(tmp_path: Path, encoding: str):
    path = tmp_path / "western.txt"
    path.write_bytes(WESTERN.encode(encoding))
    corpus = open_corpus(str(path))
    assert corpus.sources[0].encoding != "utf-8"
    assert text_of(corpus) == [WESTERN]


@pytest.mark.parametrize("bom_codec", ["utf-16-le", "utf-16-be"])
def test_utf16_with_bom(tmp_path: Path, bom_codec: str):
    text = "UTF-16 text: ĉu vi parolas Esperanton? 日本語\n"
    bom = codecs.BOM_UTF16_LE if bom_codec.endswith("le") else codecs.BOM_UTF16_BE
    path = tmp_path / "utf16.txt"
    path.write_bytes(bom + text.encode(bom_codec))
    corpus = open_corpus(str(path))
    assert corpus.sources[0].encoding == "utf-16"
    assert text_of(corpus) == [text]


def test_utf8_bom_is_not_part_of_the_text(tmp_path: Path):
    path = tmp_path / "bom.txt"
    path.write_bytes(codecs.BOM_UTF8 + b"hello\n")
    assert text_of(open_corpus(str(path))) == ["hello\n"]


def test_binary_file_is_refused(tmp_path: Path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    with pytest.raises(UserError, match="binary") as e:
        open_corpus(str(path))
    assert str(path) in str(e.value)


def test_empty_file_is_refused(tmp_path: Path):
    path = tmp_path / "empty.txt"
    path.touch()
    with pytest.raises(UserError, match="empty") as e:
        open_corpus(str(path))
    assert str(path) in str(e.value)


def test_missing_path_is_refused(tmp_path: Path):
    path = tmp_path / "nowhere.txt"
    with pytest.raises(UserError, match="no such file") as e:
        open_corpus(str(path))
    assert str(path) in str(e.value)


def test_folder_is_read_as_documents_in_sorted_order(tmp_path: Path):
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_text("bee\n")
    (folder / "a.txt").write_text("ay\n")
    (folder / "sub" / "c.md").write_text("sea\n")
    (folder / "empty.txt").touch()  # skipped: nothing to read
    (folder / ".hidden.txt").write_text("hidden\n")  # skipped: hidden
    (folder / "picture.png").write_bytes(b"\x89PNG\x00\x00")  # skipped: not a text suffix
    corpus = open_corpus(str(folder))
    assert [Path(s.name).relative_to(folder).as_posix() for s in corpus.sources] == ["a.txt", "b.txt", "sub/c.md"]
    assert text_of(corpus) == ["ay\n", "bee\n", "sea\n"]


def test_folder_hash_depends_on_names_and_bytes(tmp_path: Path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_text("one\n")
    first = open_corpus(str(folder)).content_hash
    (folder / "a.txt").rename(folder / "b.txt")
    renamed = open_corpus(str(folder)).content_hash
    (folder / "b.txt").write_text("two\n")
    changed = open_corpus(str(folder)).content_hash
    assert len({first, renamed, changed}) == 3


def test_folder_without_text_is_refused(tmp_path: Path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"\x89PNG")
    (folder / "empty.txt").touch()
    with pytest.raises(UserError, match="no non-empty text files") as e:
        open_corpus(str(folder))
    assert str(folder) in str(e.value)


def test_encoding_override_wins_over_detection(tmp_path: Path):
    path = tmp_path / "utf8.txt"
    path.write_bytes("café\n".encode())
    corpus = open_corpus(str(path), encoding="latin-1")
    assert corpus.sources[0].encoding == codecs.lookup("latin-1").name
    assert text_of(corpus) == ["cafÃ©\n"]  # read as asked, even though UTF-8 would have fitted


def test_encoding_override_that_does_not_fit_names_the_file(tmp_path: Path):
    path = tmp_path / "latin.txt"
    path.write_bytes("café\n".encode("latin-1"))
    corpus = open_corpus(str(path), encoding="utf-8")
    with pytest.raises(UserError, match="cannot be read as utf-8") as e:
        text_of(corpus)
    assert str(path) in str(e.value)


def test_unknown_encoding_is_refused(tmp_path: Path):
    path = tmp_path / "a.txt"
    path.write_text("hello\n")
    with pytest.raises(UserError, match="unknown encoding 'no-such-codec'") as e:
        open_corpus(str(path), encoding="no-such-codec")
    assert str(path) in str(e.value)


def test_undecodable_file_is_refused(tmp_path: Path):
    path = tmp_path / "noise.txt"
    path.write_bytes(bytes(range(1, 256)) * 4)  # no NUL, not UTF-8, and no text encoding makes sense of it
    with pytest.raises(UserError, match="not UTF-8") as e:
        open_corpus(str(path))
    assert str(path) in str(e.value)


def test_human_numbers():
    assert number_to_words(1) == "one"
    assert number_to_words(9999) == "nine thousand nine hundred ninety nine"
    assert number_to_words(1013) == "one thousand thirteen"
    assert human_numbers_text(3) == "one . two . three"
    corpus = open_corpus("human-numbers")
    assert text_of(corpus) == [human_numbers_text()]


@settings(max_examples=60, deadline=None)
@given(text=st.text(), encoding=st.sampled_from(["utf-8", "utf-16", "utf-32"]), block=st.integers(1, 9))
def test_lines_rejoin_to_the_text_whatever_the_block_size(tmp_path_factory, text: str, encoding: str, block: int):
    """Blocks split multi-byte characters and line endings anywhere; the lines still rejoin exactly."""
    path = tmp_path_factory.mktemp("blocks") / "t.txt"
    path.write_bytes(text.encode(encoding))
    original = read.BLOCK_BYTES
    read.BLOCK_BYTES = block
    try:
        lines = list(Source(str(path), encoding).lines())
    finally:
        read.BLOCK_BYTES = original
    assert "".join(lines) == text


def test_one_long_line_comes_in_pieces_that_rejoin(tmp_path, monkeypatch):
    import scratchlm.data.read as read

    monkeypatch.setattr(read, "MAX_PIECE_CHARS", 50)
    monkeypatch.setattr(read, "BLOCK_BYTES", 64)
    text = " ".join(f"word{i}" for i in range(500)) + "\r\nlast line\r\n"
    path = tmp_path / "long.txt"
    path.write_bytes(text.encode())
    pieces = list(read.open_corpus(str(path)).sources[0].lines())
    assert "".join(pieces) == text
    assert max(len(p) for p in pieces) <= 50 + 64  # at most a piece and one more block
    assert all(p.endswith(" ") for p in pieces[:-2])  # cut after a space: no word is split


def test_a_long_line_is_cut_at_the_last_space_before_the_limit(tmp_path, monkeypatch):
    """After the last space within the limit; never a lone leading space; the limit when there is no space."""
    monkeypatch.setattr(read, "MAX_PIECE_CHARS", 10)
    monkeypatch.setattr(read, "BLOCK_BYTES", 64)
    text = "ab cd efgh ijklmn " + "x" * 10 + " " + "y" * 20
    path = tmp_path / "long.txt"
    path.write_bytes(text.encode())
    pieces = list(read.open_corpus(str(path)).sources[0].lines())
    assert pieces[:3] == ["ab cd ", "efgh ", "ijklmn "]  # "efgh ijklmn" would pass the limit
    assert pieces[3:6] == ["x" * 10, " " + "y" * 9, "y" * 10]  # no space to cut at, then one only at the start
    assert "".join(pieces) == text and max(map(len, pieces)) <= 10


def test_an_encoding_for_the_built_in_corpus_is_refused():
    """human-numbers is generated, not read: an --encoding for it is a mistake worth saying, not ignoring."""
    with pytest.raises(UserError, match="--encoding latin-1 is for files; human-numbers is built in"):
        open_corpus("human-numbers", "latin-1")
