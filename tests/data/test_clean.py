"""Corpora as they come: Windows-1252 mojibake repaired, the few unusable lines left out with one warning (or
refused with --strict), and the counts in config.json, for translation pairs, labelled text and a language
model's corpus. The pairs below copy the damage of OpenNMT-py's toy English-German corpus (src-train.txt:664
holds U+0096, a dash of Windows-1252 decoded as latin-1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scratchlm.checkpoint import CONFIG
from scratchlm.cli import main
from scratchlm.data.clean import NOT_IN_CP1252, Screen, control_character, repair_mojibake
from scratchlm.data.labelled import LabelledConfig, read_labelled
from scratchlm.data.pairs import PairsConfig, read_pairs
from scratchlm.data.tokenize import tokenizer_from_file
from scratchlm.errors import UserError


def test_each_c1_control_becomes_the_windows_1252_character_of_its_byte():
    for byte in range(0x80, 0xA0):
        char = chr(byte)
        if byte in NOT_IN_CP1252:  # no character to restore: it stays a control, and the line is unusable
            assert repair_mojibake(char) == char and control_character(char) == char
        else:
            assert repair_mojibake(char) == bytes([byte]).decode("cp1252") and control_character(repair_mojibake(char)) is None
    assert repair_mojibake("Sie sagte \x84Nein\x93 \x96 gut") == "Sie sagte „Nein“ – gut"
    assert control_character("tab\tand text") is None and control_character("a\x00b") == "\x00"


def write_pairs(folder: Path) -> tuple[Path, Path]:
    # long enough that a NUL is a damaged line, not a binary file (more than one NUL in 1,000 bytes: data/read.py)
    src = [f"sentence number {i} ." for i in range(100)]
    tgt = [f"Satz Nummer {i} ." for i in range(100)]
    src[5], tgt[5] = "Resumption \x96 of the session", "Wiederaufnahme \x96 der Sitzungsperiode"
    src[9] = "a NUL\x00 in the middle"
    tgt[12] = ""
    src[20] = "a bell \x07 rings"
    (folder / "src.txt").write_text("\n".join(src) + "\n", encoding="utf-8")
    (folder / "tgt.txt").write_text("\n".join(tgt) + "\n", encoding="utf-8")
    return folder / "src.txt", folder / "tgt.txt"


def test_pairs_are_repaired_and_the_unusable_left_out_with_their_places(tmp_path: Path):
    src, tgt = write_pairs(tmp_path)
    pairs = read_pairs(PairsConfig(src=str(src), tgt=str(tgt)))
    assert len(pairs.sources) == 97 and "Resumption – of the session" in pairs.sources
    assert pairs.screen.repaired == 2 and pairs.screen.summary() == {"lines_repaired": 2, "skipped": 3}
    assert [place.split(": ")[0] for place in pairs.screen.skipped] == [f"{src}:10", f"{tgt}:13", f"{src}:21"]
    assert "a NUL byte" in pairs.screen.skipped[0] and "U+0007" in pairs.screen.skipped[2]
    with pytest.raises(UserError, match=rf"{src}:10: holds a NUL byte"):
        read_pairs(PairsConfig(src=str(src), tgt=str(tgt), strict=True))
    kept = read_pairs(PairsConfig(src=str(src), tgt=str(tgt), repair=False))
    assert len(kept.sources) == 96 and kept.screen.repaired == 0  # the mojibake pair is now a control character


def test_a_tsv_line_without_its_columns_is_left_out(tmp_path: Path):
    path = tmp_path / "p.tsv"
    path.write_text("".join(f"go {i}\tva {i}\n" for i in range(10)) + "only one column\n\tempty source\n")
    pairs = read_pairs(PairsConfig(path=str(path)))
    assert len(pairs.sources) == 10 and len(pairs.screen.skipped) == 2
    assert pairs.screen.skipped[0].startswith(f"{path}:11: has 1 column(s)")
    assert pairs.screen.skipped[1] == f"{path}:12: the source side is empty"


def test_training_on_damaged_pairs_warns_once_and_counts_in_config_json(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture):
    src, tgt = write_pairs(tmp_path)
    out = tmp_path / "run"
    args = ["train", "--model", "seq2seq", "--src", str(src), "--tgt", str(tgt), "--tokenizer", "word", "--epochs", "1",
            "--batch-size", "8", "--set", "n_embed=8", "--set", "n_hidden=8", "--quiet", "--out", str(out)]
    assert main(args) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("scratchlm: warning:")]
    assert warnings == [
        "scratchlm: warning: 2 line(s) held Windows-1252 characters decoded as latin-1 (C1 controls, mojibake); repaired",
        f"scratchlm: warning: 3 pair(s) left out, unusable: {src}:10: holds a NUL byte; {tgt}:13: an empty line where "
        f"the other file has a sentence; {src}:21: holds the control character U+0007 (--strict refuses them)"]
    summary = json.loads((out / CONFIG).read_text())["data"]
    assert summary["lines_repaired"] == 2 and summary["skipped"] == 3 and summary["pairs"] == 97
    assert main([*args[:-1], str(tmp_path / "strict"), "--strict"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{src}:10: holds a NUL byte" in err and not (tmp_path / "strict").exists()


def test_files_of_different_lengths_stay_an_error(tmp_path: Path):
    (tmp_path / "a").write_text("one\ntwo\nthree\n")
    (tmp_path / "b").write_text("un\ndeux\n")
    with pytest.raises(UserError, match="has 3 lines and --tgt"):
        read_pairs(PairsConfig(src=str(tmp_path / "a"), tgt=str(tmp_path / "b")))


def test_labelled_examples_are_screened_alike(tmp_path: Path):
    path = tmp_path / "reviews.csv"
    rows = [f"good film {i},pos\nbad film {i},neg\n" for i in range(50)]
    path.write_text("text,label\n" + "".join(rows) + "a \x93quoted\x94 gem,pos\nbroken\x00row,neg\nno label,\nshort\n")
    labelled = read_labelled(LabelledConfig(path=str(path)))
    assert len(labelled.texts) == 101 and "a “quoted” gem" in labelled.texts
    assert labelled.screen.summary() == {"lines_repaired": 1, "skipped": 3}
    with pytest.raises(UserError, match=rf"{path}:103: holds a NUL byte"):
        read_labelled(LabelledConfig(path=str(path), strict=True))


def test_a_language_models_corpus_is_repaired_as_it_is_read(tmp_path: Path, capsys: pytest.CaptureFixture):
    data = tmp_path / "text.txt"
    data.write_text("it was \x96 so they said \x96 the best of times.\n" * 30 + "plain line\n" * 30, encoding="utf-8")
    assert main(["train", "--data", str(data), "--epochs", "1", "--batch-size", "4", "--bptt", "8", "--quiet",
                 "--out", str(tmp_path / "run")]) == 0
    assert "30 line(s) held Windows-1252 characters" in capsys.readouterr().err
    itos = tokenizer_from_file(tmp_path / "run" / "tokenizer.json").itos
    assert "–" in itos and "\x96" not in itos
    assert json.loads((tmp_path / "run" / CONFIG).read_text())["data"]["lines_repaired"] == 30
    assert main(["train", "--data", str(data), "--epochs", "1", "--batch-size", "4", "--bptt", "8", "--quiet",
                 "--no-repair", "--out", str(tmp_path / "raw")]) == 0
    assert "\x96" in tokenizer_from_file(tmp_path / "raw" / "tokenizer.json").itos


def test_a_screen_counts_only_what_it_changed():
    screen = Screen()
    assert screen.line("nothing to do", "f:1") == "nothing to do" and screen.summary() == {"lines_repaired": 0, "skipped": 0}
