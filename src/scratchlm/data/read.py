"""Reading text: a built-in corpus, a file, or a folder of files, in any encoding, without surprises.

A corpus is a list of `Source`s (one per document) that are read lazily, a block at a time, so a
1 GB file is never held in memory whole. Decoding is UTF-8 by default; when UTF-8 fails we ask
charset-normalizer (a maintained detector) instead of guessing by hand; a byte-order mark wins over both.
With `repair`, Windows-1252 mojibake (C1 controls) in a line becomes the characters meant (data/clean.py).
Every failure is a `UserError` naming the file and what to do.
"""

from __future__ import annotations

import codecs
import hashlib
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from scratchlm.data.clean import MOJIBAKE, repair_mojibake
from scratchlm.data.human_numbers import NAME as HUMAN_NUMBERS
from scratchlm.data.human_numbers import human_numbers_text
from scratchlm.errors import UserError

BLOCK_BYTES = 1 << 22  # read 4 MiB at a time: memory stays flat however big the file
MAX_PIECE_CHARS = 1 << 20  # a line longer than this is handed on in pieces
SNIFF_BYTES = 1 << 16  # bytes looked at to tell text from binary
BOMS = [(codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")]
UNPACK = "not a text file; unpack it{} and pass the folder (or a .txt file) as --data"
DECOMPRESS = "not a text file; decompress it ({}) and pass the text (or the unpacked folder) as --data"
NOT_TEXT = "a binary file, not text; pass a text file (or a folder of them) as --data"
# (how the file begins, what it is, what to do): formats that are never text, told by their magic bytes
# whatever the file is called, so that an archive is not taken for text without a byte-order mark.
MAGIC = [(re.compile(pattern, re.DOTALL), what, advice) for pattern, what, advice in [
    (rb"PK(\x03\x04|\x05\x06)", "a zip archive", UNPACK.format("")),
    (rb"7z\xbc\xaf\x27\x1c", "a 7z archive", UNPACK.format(" (7z x)")),
    (rb"Rar!\x1a\x07", "a rar archive", UNPACK.format(" (unrar x)")),
    (rb".{257}ustar", "a tar archive", UNPACK.format(" (tar -xf)")),
    (rb"\x1f\x8b", "a gzip-compressed file", DECOMPRESS.format("gunzip, or tar -xzf for a .tgz or .tar.gz")),
    (rb"BZh[1-9](1AY&SY|\x17rE8P\x90)", "a bzip2-compressed file", DECOMPRESS.format("bunzip2, or tar -xjf for a .tar.bz2")),
    (rb"\xfd7zXZ\x00", "an xz-compressed file", DECOMPRESS.format("unxz, or tar -xJf for a .tar.xz")),
    (rb"\x28\xb5\x2f\xfd", "a zstd-compressed file", DECOMPRESS.format("unzstd, or tar --zstd -xf for a .tar.zst")),
    (rb"%PDF-", "a PDF document", "not plain text; extract its text first (e.g. pdftotext) and pass that"),
    (rb"\x89PNG\r\n\x1a\n", "a PNG image", NOT_TEXT),
    (rb"\xff\xd8\xff", "a JPEG image", NOT_TEXT),
    (rb"GIF8[79]a", "a GIF image", NOT_TEXT),
    (rb"\x7fELF", "an ELF executable", NOT_TEXT),
]]
SHOWN_SKIPPED = 3  # files named in the warning about a folder's files left out
TEXT_SUFFIXES = {"", ".txt", ".text", ".md", ".rst", ".csv", ".tsv", ".json", ".jsonl", ".srt", ".tex",
                 ".html", ".xml", ".log", ".py", ".fountain"}


@dataclass(frozen=True)
class Source:
    """One document: a file on disk (with its encoding) or the built-in corpus."""

    name: str  # a path, or the built-in corpus' name
    encoding: str  # the codec used to decode it

    def blocks(self) -> Iterator[str]:
        """The decoded text, a block at a time (a block never splits a multi-byte character)."""
        if self.name == HUMAN_NUMBERS:
            yield human_numbers_text()
            return
        decoder = codecs.getincrementaldecoder(self.encoding)(errors="strict")
        with open(self.name, "rb") as f:
            while True:
                block = f.read(BLOCK_BYTES)
                try:  # the last, empty block flushes the decoder: a character cut short at the end fails there
                    text = decoder.decode(block, final=not block)
                except UnicodeError as e:  # UTF-16 without a byte-order mark raises the base class
                    raise UserError(f"{self.name}: cannot be read as {self.encoding} ({getattr(e, 'reason', e)}); "
                                    f"pass --encoding NAME") from None
                yield text
                if not block:
                    return

    def lines(self) -> Iterator[str]:
        """The text as lines, each keeping its line ending.

        A line longer than a block comes in pieces cut after a space, so a file that is one long line
        never has to be held whole; a piece without a line ending is no line end for the tokenizers.
        """
        carry = ""
        for block in self.blocks():
            parts = (carry + block).splitlines(keepends=True)
            # The last part may continue in the next block (as may a "\r" whose "\n" comes next).
            carry = parts.pop() if parts and not parts[-1].endswith("\n") else ""
            yield from parts
            while len(carry) > MAX_PIECE_CHARS:
                # After the last space before the limit (one at the very start would cut off just itself).
                space = carry.rfind(" ", 1, MAX_PIECE_CHARS)
                cut = space + 1 if space > 0 else MAX_PIECE_CHARS
                yield carry[:cut]
                carry = carry[cut:]
        if carry:
            yield carry


@dataclass(frozen=True)
class Corpus:
    """The documents of one data argument, in a fixed order, with a hash of their bytes."""

    spec: str  # what the user passed to --data
    sources: tuple[Source, ...]
    content_hash: str  # sha256 over names and bytes: the key of the token cache

    repair: bool = False  # lines' C1 controls become Windows-1252's characters (data/clean.py)

    def texts(self, repaired: list[int] | None = None) -> Iterator[Iterator[str]]:
        """Each document's lines, document by document; `repaired[0]` counts the lines repaired."""
        return (self.repaired_lines(source.lines(), repaired) for source in self.sources) if self.repair else (
            source.lines() for source in self.sources)

    @staticmethod
    def repaired_lines(lines: Iterator[str], repaired: list[int] | None) -> Iterator[str]:
        for line in lines:
            if MOJIBAKE.search(line):
                line = repair_mojibake(line)
                if repaired is not None:
                    repaired[0] += 1
            yield line


def open_corpus(spec: str, encoding: str | None = None, repair: bool = False) -> Corpus:
    """Resolve `--data`: the built-in corpus name, a text file, or a folder of text files; `repair`: its lines'
    mojibake is repaired as they are read."""
    if spec == HUMAN_NUMBERS:
        if encoding:
            raise UserError(f"--encoding {encoding} is for files; {HUMAN_NUMBERS} is built in and has no encoding "
                            "to choose (drop --encoding)")
        digest = hashlib.sha256(human_numbers_text().encode()).hexdigest()
        return Corpus(spec, (Source(HUMAN_NUMBERS, "utf-8"),), digest, repair)
    path = Path(spec)
    if not path.exists():
        raise UserError(f"{spec}: no such file or folder (use a text file, a folder of them, or {HUMAN_NUMBERS})")
    if path.is_dir():
        files = text_files(path)
        if not files:
            kinds = ", ".join(sorted(TEXT_SUFFIXES - {""}))
            raise UserError(f"{spec}: the folder holds no non-empty text files (looked for {kinds})")
    else:
        if path.stat().st_size == 0:
            raise UserError(f"{spec}: the file is empty; give a file with some text in it")
        files = [path]
    if encoding:
        encoding = codec_name(encoding, spec)
        for p in files:  # an archive is never text, whatever encoding it is read with
            refuse_known_binary(p, read_head(p))
    sources = tuple(Source(str(p), encoding or detect_encoding(p)) for p in files)
    return Corpus(spec, sources, hash_files(files, root=path), repair)


def text_files(folder: Path) -> list[Path]:
    """The folder's non-empty text files, by name, below it at any depth (hidden files and folders are not read);
    one warning names the files left out and why, so a corpus never shrinks without a word."""
    files, skipped = [], []
    for p in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = p.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if p.suffix.lower() not in TEXT_SUFFIXES:
            skipped.append(f"{relative} (not a text file's name)")
        elif p.stat().st_size == 0:
            skipped.append(f"{relative} (empty)")
        else:
            files.append(p)
    if skipped and files:
        shown = ", ".join(skipped[:SHOWN_SKIPPED]) + (" ..." if len(skipped) > SHOWN_SKIPPED else "")
        warnings.warn(f"{folder}: {len(skipped)} file(s) left out: {shown}; {len(files)} read", stacklevel=3)
    return files


def codec_name(encoding: str, spec: str) -> str:
    """The canonical name of an encoding, or a UserError for an unknown one naming the data it was for."""
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise UserError(f"{spec}: unknown encoding {encoding!r} (try utf-8, latin-1, cp1252, utf-16)") from None


def detect_encoding(path: Path) -> str:
    """UTF-8 if the whole file decodes as UTF-8, else a byte-order mark, else charset-normalizer's best guess.

    An archive, PDF, image or program is refused first by its magic bytes (see MAGIC), then anything with more
    than one NUL byte in a thousand (binary data, or UTF-16 without a byte-order mark).
    """
    head = read_head(path)
    if not head:
        raise UserError(f"{path}: the file is empty; give a file with some text in it")
    refuse_known_binary(path, head)
    for bom, name in BOMS:
        if head.startswith(bom):
            return name
    if head.count(b"\x00") > len(head) // 1000:  # a NUL or two in a corpus is a damaged line (data/clean.py)
        raise UserError(f"{path}: looks like a binary file (it contains NUL bytes), not text; "
                        "if it is UTF-16 or UTF-32 text without a byte-order mark, pass --encoding")
    if decodes_as(path, "utf-8"):
        return "utf-8"
    from charset_normalizer import from_path  # imported here: only files that are not UTF-8 need it

    best = prefer_western(from_path(path))
    if best is None or not decodes_as(path, best.encoding):
        raise UserError(f"{path}: not UTF-8 and no other text encoding fits; "
                        "if it is text, pass --encoding NAME (e.g. latin-1)")
    return codecs.lookup(best.encoding).name


def read_head(path: Path) -> bytes:
    """The first bytes of a file, enough to tell text from binary."""
    with open(path, "rb") as f:
        return f.read(SNIFF_BYTES)


def refuse_known_binary(path: Path, head: bytes) -> None:
    """A UserError naming what the file is, if it begins as an archive, a PDF, an image or a program does."""
    for magic, what, advice in MAGIC:
        if magic.match(head):
            raise UserError(f"{path}: {what}, {advice}")


PREFERRED = ("cp1252", "latin_1", "iso8859_15")  # when the detector cannot tell them apart, in this order


def prefer_western(results):
    """charset-normalizer's best guess, except that among guesses it scores exactly alike, Windows-1252
    wins: the detector ranks equals by name, and for French text ("là", "café") it put cp1250 first
    ("lŕ"), on rt-polarity's reviews too. Windows-1252 is what an undeclared 8-bit text file most often
    is (the web's encoding standard reads even latin-1 as it)."""
    best = results.best()
    if best is None:
        return None
    tied = [m for m in results if m.chaos == best.chaos and m.coherence == best.coherence]
    return next((m for name in PREFERRED for m in tied if codecs.lookup(m.encoding).name == codecs.lookup(name).name),
                best)


def decodes_as(path: Path, encoding: str) -> bool:
    """Does the whole file decode with `encoding`? Streams the file, holding one block at a time."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    try:
        with open(path, "rb") as f:
            while block := f.read(BLOCK_BYTES):
                decoder.decode(block)
        decoder.decode(b"", final=True)
    except UnicodeError:
        return False
    return True


def hash_files(files: list[Path], root: Path) -> str:
    """sha256 over the bytes of each file, in order, and for a folder each file's relative name.

    A single file is keyed by its bytes alone, so a renamed or moved copy still finds its cached tokens.
    """
    digest = hashlib.sha256()
    for p in files:
        if root.is_dir():
            digest.update(str(p.relative_to(root)).encode() + b"\0")
        with open(p, "rb") as f:
            while block := f.read(BLOCK_BYTES):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def read_lines(path: str, encoding: str | None = None) -> tuple[list[str], str, str]:
    """The lines of one file, without their line ends, as read; its encoding and content hash."""
    if not Path(path).is_file():
        raise UserError(f"{path}: no such file" + (" (a folder: give one file of sentences)" if Path(path).is_dir() else ""))
    corpus = open_corpus(path, encoding)
    source = corpus.sources[0]
    return "".join(source.blocks()).splitlines(), source.encoding, corpus.content_hash
