"""The messages for two common slips: a mistyped model or tokenizer name, and an archive or other binary as --data.

Through `main()` in this process, held to test_cli.py's contract: exit code 2, one line on stderr starting
with "scratchlm: error:", no traceback, nothing on stdout, the input file unchanged and no run folder left.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import tarfile
import zipfile
from pathlib import Path

import pytest

from scratchlm.cli import main
from scratchlm.data.read import detect_encoding
from scratchlm.data.tokenize import KINDS, TokenizerSpec
from scratchlm.errors import UserError, closest
from scratchlm.models.registry import REGISTRY, get_spec

TEXT = b"some text, line after line.\n" * 20


def refused(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """The one error line of `scratchlm ARGS`, after checking the contract."""
    code = main(list(args))
    out, err = capsys.readouterr()
    assert code == 2, err
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("scratchlm: error: "), err
    return lines[0]


# ---------------------------------------------------------------- names


@pytest.mark.parametrize(("name", "choices", "expected"), [
    ("lstn", REGISTRY, ["lstm"]),
    ("gpt-17", REGISTRY, ["gpt"]),
    ("awd", REGISTRY, ["awd-lstm"]),  # a prefix, too far from the whole name for difflib alone
    ("xyz", REGISTRY, []),
    ("chr", KINDS, ["char"]),
    ("wrod", KINDS, ["word"]),
    ("morse", KINDS, []),
    ("", KINDS, []),
])
def test_closest_names_the_probable_choices(name: str, choices, expected: list[str]):
    assert closest(name, choices) == expected


def test_closest_puts_the_best_first_and_keeps_the_choices_spelling():
    assert closest("rnn-deeper", REGISTRY)[0] == "rnn-deep"
    assert closest("GRU-SCRATH", REGISTRY)[0] == "gru-scratch"
    assert closest("lstm_scratch", ["LSTM-Scratch", "gru"]) == ["LSTM-Scratch"]


@pytest.mark.parametrize(("args", "line"), [
    (["train", "--model", "lstn"], "unknown model 'lstn'; did you mean lstm? (see `scratchlm models`)"),
    (["train", "--model", "gpt-17"], "unknown model 'gpt-17'; did you mean gpt? (see `scratchlm models`)"),
    (["models", "lstn"], "unknown model 'lstn'; did you mean lstm? (see `scratchlm models`)"),
    (["lr-find", "--model", "awd"], "unknown model 'awd'; did you mean awd-lstm? (see `scratchlm models`)"),
    (["train", "--tokenizer", "chr"], "unknown tokenizer 'chr'; did you mean char? (choose one of char, word, bpe)"),
    (["train", "--tokenizer", "wrod"], "unknown tokenizer 'wrod'; did you mean word? (choose one of char, word, bpe)"),
])
def test_a_mistyped_name_gets_the_closest_ones(capsys, tmp_path: Path, args: list[str], line: str):
    fresh = tmp_path / "run"
    extra = ["--out", str(fresh)] if args[0] == "train" else []
    assert refused(capsys, *args, *extra) == f"scratchlm: error: {line}"
    assert not fresh.exists()


def test_a_name_near_nothing_lists_every_choice(capsys, tmp_path: Path):
    line = refused(capsys, "train", "--model", "xyz", "--out", str(tmp_path / "run"))
    assert line == f"scratchlm: error: unknown model 'xyz'; choose one of {', '.join(REGISTRY)} (see `scratchlm models`)"
    line = refused(capsys, "train", "--tokenizer", "morse", "--out", str(tmp_path / "run"))
    assert line == "scratchlm: error: unknown tokenizer 'morse'; choose one of char, word, bpe"
    assert not (tmp_path / "run").exists()


def test_names_are_case_insensitive():
    assert get_spec("LSTM") is REGISTRY["lstm"]
    assert get_spec("Gpt").name == "gpt"
    assert get_spec("AWD-LSTM").name == "awd-lstm"
    assert TokenizerSpec(kind="BPE", vocab_size=100).kind == "bpe"
    assert TokenizerSpec(kind="Char") == TokenizerSpec(kind="char")  # so the token cache key is the same too
    with pytest.raises(UserError, match="did you mean lstm"):
        get_spec("LSTN")


def test_models_resolves_a_name_in_any_case(capsys):
    assert main(["models", "LSTM"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("lstm: ") and err == ""


def test_train_with_capitals_stores_the_registry_names(capsys, tmp_path: Path):
    out = tmp_path / "run"
    code = main(["train", "--model", "RNN", "--tokenizer", "WORD", "--epochs", "1", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["name"] == "rnn"
    assert config["data"]["config"]["tokenizer"]["kind"] == "word"


# ---------------------------------------------------------------- archives and other binaries as --data


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("a.txt", TEXT)
    return buffer.getvalue()


def tar_bytes(mode: str = "w") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as t:
        info = tarfile.TarInfo("a.txt")
        info.size = len(TEXT)
        t.addfile(info, io.BytesIO(TEXT))
    return buffer.getvalue()


UNPACK = "not a text file; unpack it"
DECOMPRESS = "not a text file; decompress it"
# (file name, its bytes, what the error line says after "NAME: ")
BINARIES = [
    ("data.zip", zip_bytes(), "a zip archive, not a text file; unpack it and pass the folder (or a .txt file) as --data"),
    ("notes.txt", zip_bytes(), "a zip archive, " + UNPACK),  # by its bytes, not its name
    ("data.txt.gz", gzip.compress(TEXT), "a gzip-compressed file, " + DECOMPRESS + " (gunzip"),
    ("data.tgz", tar_bytes("w:gz"), "a gzip-compressed file, " + DECOMPRESS),
    ("data.bz2", bz2.compress(TEXT), "a bzip2-compressed file, " + DECOMPRESS + " (bunzip2"),
    ("data.xz", lzma.compress(TEXT), "an xz-compressed file, " + DECOMPRESS + " (unxz"),
    ("data.7z", b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(24), "a 7z archive, " + UNPACK),
    ("data.tar", tar_bytes(), "a tar archive, " + UNPACK + " (tar -xf)"),
    ("paper.pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n",
     "a PDF document, not plain text; extract its text first (e.g. pdftotext) and pass that"),
    ("cat.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(17), "a PNG image, a binary file, not text"),
    ("cat.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(16), "a JPEG image, a binary file, not text"),
    ("tool", b"\x7fELF\x02\x01\x01\x00" + bytes(56), "an ELF executable, a binary file, not text"),
]


@pytest.mark.parametrize("encoding", [None, "latin-1"], ids=["detected", "given"])
@pytest.mark.parametrize(("name", "data", "message"), BINARIES, ids=[b[0] for b in BINARIES])
def test_a_binary_data_file_is_named_as_what_it_is(capsys, tmp_path: Path, name: str, data: bytes, message: str,
                                                   encoding: str | None):
    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / name
    path.write_bytes(data)
    before = hashlib.sha256(data).hexdigest()
    fresh = tmp_path / "run"
    args = ["train", "--data", str(path), "--out", str(fresh), *(["--encoding", encoding] if encoding else [])]
    line = refused(capsys, *args)
    assert line.startswith("scratchlm: error: ") and f"{name}: {message}" in line
    assert "UTF-16" not in line and "NUL" not in line  # not the hint for text without a byte-order mark
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert not fresh.exists() and {p.name for p in tmp_path.iterdir()} <= {"cache", "in"}
    assert [p.name for p in (tmp_path / "in").iterdir()] == [name]


def test_an_archive_for_lr_find_is_named_too(capsys, tmp_path: Path):
    path = tmp_path / "data.zip"
    path.write_bytes(zip_bytes())
    line = refused(capsys, "lr-find", "--data", str(path))
    assert "data.zip: a zip archive, not a text file" in line


@pytest.mark.parametrize("text", [
    "BZh9 is how a bzip2 file begins, but this is a sentence.\n",
    "PK is a footballer's word for a penalty kick.\n",
    "%PDF is mentioned, but not at the start. %PDF-1.7\n",
    "GIF89 is no image here.\n",
])
def test_text_that_begins_like_a_signature_is_still_text(tmp_path: Path, text: str):
    path = tmp_path / "a.txt"
    path.write_text(text * 5, encoding="utf-8")
    assert detect_encoding(path) == "utf-8"


def test_the_training_options_are_the_train_configs_fields():
    """Written once: each of TrainConfig's fields is an option of train, lr-find and ladder, its comment the help."""
    from scratchlm.cli import build_parser, subparsers
    from scratchlm.config import TrainConfig, option_fields

    for verb in ("train", "lr-find", "ladder"):
        actions = {a.dest: a for a in subparsers(build_parser("lm"))[verb]._actions}
        for f, _, meaning in option_fields(TrainConfig):
            assert meaning and actions[f.name].help.startswith(meaning), (verb, f.name)


def test_an_option_two_tasks_name_alike_means_one_thing_for_each():
    from scratchlm.cli import build_parser, subparsers

    def help_of(task: str) -> str:
        return next(a.help for a in subparsers(build_parser(task))["train"]._actions if a.dest == "max_length")

    assert help_of("translation").startswith("leave out training pairs")
    assert help_of("classification").startswith("keep a text's first N tokens")
    assert not any(a.dest == "max_length" for a in subparsers(build_parser("lm"))["train"]._actions)
