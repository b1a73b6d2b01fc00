"""Tokenizers: characters, words, or byte-level BPE; trained on a corpus in one streaming pass.

Every tokenizer shares the same special tokens at the same ids, so models and batches never need to
know which kind they got:

    0 <unk>  a token outside the vocabulary       2 <bos>  start of a sequence (seq2seq)
    1 <pad>  padding in batches of pairs          3 <eos>  end of a sequence (seq2seq, stop of generation)
    4 <doc>  separator put before each document of a corpus, so a folder of scripts is one stream

`encode_block` turns a block of text into a numpy array of ids: the fast path used to fill the token
cache. `decode` is its inverse; char and BPE round-trip any text, word round-trips text whose words
are separated by single spaces. `char_counts` gives the characters of text each id stands for, so a
loss per token becomes bits per character, which compares char, word and BPE models of one text.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from scratchlm.data.phrases import join, learn_phrases
from scratchlm.errors import UserError, closest

SPECIALS = ("<unk>", "<pad>", "<bos>", "<eos>", "<doc>")
UNK, PAD, BOS, EOS, DOC = range(len(SPECIALS))
KINDS = ("char", "word", "bpe")
FORMAT = "scratchlm-tokenizer/1"


@dataclass(frozen=True)
class TokenizerSpec:
    """How to build a tokenizer from a corpus; saved in config.json and part of the token cache key."""

    kind: Literal["char", "word", "bpe"] = "word"  # what one token is
    vocab_size: int | None = None  # keep the most frequent tokens (required for bpe); None keeps all
    min_freq: int = 1  # char/word: drop tokens seen fewer times than this (they become <unk>)
    phrases: int = 0  # word: passes of phrase detection (data/phrases.py) joining frequent pairs, new_york
    phrase_threshold: float = 100.0  # word: a pair is joined when its phrase score is above this

    def __post_init__(self) -> None:
        if isinstance(self.kind, str) and self.kind.lower() in KINDS:
            object.__setattr__(self, "kind", self.kind.lower())  # `BPE` is bpe (frozen: set it this once)
        elif near := closest(str(self.kind), KINDS):
            raise UserError(f"unknown tokenizer {self.kind!r}; did you mean {', '.join(near)}? "
                            f"(choose one of {', '.join(KINDS)})")
        else:
            raise UserError(f"unknown tokenizer {self.kind!r}; choose one of {', '.join(KINDS)}")
        if self.vocab_size is not None and not len(SPECIALS) < self.vocab_size <= 10_000_000:
            raise UserError(f"--vocab-size {self.vocab_size} is out of range; "
                            f"give a number above {len(SPECIALS)} (e.g. 8000)")
        if self.min_freq < 1:
            raise UserError(f"--min-freq {self.min_freq} must be at least 1")
        if not 0 <= self.phrases <= 10:
            raise UserError(f"--phrases {self.phrases} must be between 0 and 10 passes")
        if self.phrases and self.kind != "word":
            raise UserError("--phrases joins words: it needs the word tokenizer")
        if not self.phrase_threshold > 0:
            raise UserError(f"--phrase-threshold {self.phrase_threshold} must be above 0 (word2phrase's is 100)")


class VocabTokenizer:
    """A fixed list of tokens; the base of the char and word tokenizers."""

    kind = ""

    def __init__(self, tokens: list[str]):
        assert tuple(tokens[: len(SPECIALS)]) == SPECIALS, "the specials come first"
        self.itos = tokens
        self.stoi = {t: i for i, t in enumerate(tokens)}

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        return self.encode_block(text).tolist()

    def to_json(self) -> dict:
        return {"format": FORMAT, "kind": self.kind, "tokens": self.itos}

    def unknown_pieces(self, text: str) -> list[str]:
        """The pieces of `text` that this vocabulary does not have (they would become <unk>)."""
        return sorted({piece for piece in self.split(text) if piece not in self.stoi})

    def char_counts(self) -> np.ndarray:
        """Characters of text per id (a separator such as <doc> stands for none); <unk> counts as one."""
        counts = np.array([len(t) for t in self.itos], dtype=np.int64)
        counts[: len(SPECIALS)] = 0
        counts[UNK] = 1
        return counts


class CharTokenizer(VocabTokenizer):
    """One token per Unicode character (Karpathy's char-rnn, nanoGPT's shakespeare_char)."""

    kind = "char"

    def __init__(self, tokens: list[str]):
        super().__init__(tokens)
        # A dense table from code point to id turns encoding into one numpy gather: no Python loop per char.
        chars = [(ord(t), i) for i, t in enumerate(tokens) if i >= len(SPECIALS)]
        self.table = np.full(max((c for c, _ in chars), default=0) + 1, UNK, dtype=np.int64)
        for code, i in chars:
            self.table[code] = i

    @staticmethod
    def split(text: str) -> list[str]:
        return list(text)

    @classmethod
    def train(cls, documents: Iterable[Iterable[str]], spec: TokenizerSpec) -> CharTokenizer:
        counts = Counter()
        for lines in documents:
            for line in lines:
                counts.update(line)
        return cls(list(SPECIALS) + sorted(keep_frequent(counts, spec)))

    def encode_block(self, text: str) -> np.ndarray:
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.int64)
        inside = codes < len(self.table)
        return np.where(inside, self.table[np.where(inside, codes, 0)], UNK)

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.itos[i] for i in ids)


class WordTokenizer(VocabTokenizer):
    """Words separated by whitespace, and a newline token at each line end (the book's `text.split(' ')`,
    PyTorch's word_language_model). Text already tokenized, like WikiText, keeps its own conventions."""

    kind = "word"
    NEWLINE = "\n"

    def __init__(self, tokens: list[str], phrases: list[list[tuple[str, str]]] | None = None):
        super().__init__(tokens)
        self.phrases = [[tuple(pair) for pair in joined] for joined in phrases or []]  # each pass's joined pairs
        self.phrase_sets = [set(joined) for joined in self.phrases]

    def split(self, text: str) -> list[str]:
        tokens = []
        for line in text.splitlines(keepends=True):
            tokens += join(line.split(), self.phrase_sets) if self.phrase_sets else line.split()
            if line.endswith(("\n", "\r")):
                tokens.append(self.NEWLINE)
        return tokens

    @classmethod
    def train(cls, documents: Iterable[Iterable[str]], spec: TokenizerSpec) -> WordTokenizer:
        phrases = None
        if spec.phrases:  # the text is read twice, so its lines are held: once to find the phrases, once to count
            documents = [list(lines) for lines in documents]
            phrases = learn_phrases((line.split() for lines in documents for line in lines), spec.phrases,
                                    spec.phrase_threshold, delta=spec.min_freq, min_count=spec.min_freq)
        splitter = cls(list(SPECIALS), phrases)
        counts = Counter()
        for lines in documents:
            for line in lines:
                counts.update(splitter.split(line))
        for special in SPECIALS:
            counts.pop(special, None)
        return cls(list(SPECIALS) + keep_frequent(counts, spec), phrases)

    def to_json(self) -> dict:
        phrases = [[list(pair) for pair in joined] for joined in self.phrases]
        return {**super().to_json(), **({"phrases": phrases} if phrases else {})}

    def encode_block(self, text: str) -> np.ndarray:
        get = self.stoi.get
        return np.fromiter((get(t, UNK) for t in self.split(text)), dtype=np.int64)

    def char_counts(self) -> np.ndarray:
        """A word and the space after it; the newline token its newline, which takes the space's place:
        "a b\\n" is 2 + 2 + 0 = 4 characters. <unk> counts as WikiText writes it, `<unk> `."""
        counts = np.array([len(t) + 1 for t in self.itos], dtype=np.int64)
        counts[: len(SPECIALS)] = 0
        counts[UNK] = len(SPECIALS[UNK]) + 1
        if self.NEWLINE in self.stoi:
            counts[self.stoi[self.NEWLINE]] = 0
        return counts

    def decode(self, ids: Iterable[int]) -> str:
        out: list[str] = []
        for i in ids:
            token = self.itos[i]
            if out and token != self.NEWLINE and out[-1] != self.NEWLINE:
                out.append(" ")
            out.append(token)
        return "".join(out)


class BPETokenizer:
    """Byte-level byte-pair encoding (Sennrich et al. 2016; GPT-2's byte-level variant), trained with
    Hugging Face `tokenizers`. Any text round-trips exactly; nothing is ever <unk>."""

    kind = "bpe"

    def __init__(self, hf_tokenizer):
        self.hf = hf_tokenizer

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size()

    @classmethod
    def train(cls, documents: Iterable[Iterable[str]], spec: TokenizerSpec) -> BPETokenizer:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        hf = Tokenizer(models.BPE(unk_token=SPECIALS[UNK]))
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=spec.vocab_size or 8000, special_tokens=list(SPECIALS),
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      min_frequency=spec.min_freq, show_progress=False)
        hf.train_from_iterator((line for lines in documents for line in lines), trainer=trainer)
        return cls(hf)

    def encode_block(self, text: str) -> np.ndarray:
        return np.asarray(self.hf.encode(text).ids, dtype=np.int64)

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text).ids

    def decode(self, ids: Iterable[int]) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=False)

    def unknown_pieces(self, text: str) -> list[str]:
        return []  # byte-level: every string has an encoding

    def char_counts(self) -> np.ndarray:
        """The characters that start in each token: its bytes that begin a UTF-8 sequence (not 10xxxxxx).
        A character split across tokens counts once, in the token that holds its first byte."""
        to_byte = {c: b for b, c in byte_alphabet().items()}
        counts = np.zeros(self.vocab_size, dtype=np.int64)
        for token, i in self.hf.get_vocab().items():
            if i >= len(SPECIALS) and all(c in to_byte for c in token):
                counts[i] = sum(to_byte[c] & 0xC0 != 0x80 for c in token)
        return counts

    def to_json(self) -> dict:
        return {"format": FORMAT, "kind": self.kind, "tokenizer": json.loads(self.hf.to_str())}


def byte_alphabet() -> dict[int, str]:
    """Byte-level BPE's printable stand-in for each byte (GPT-2, Radford et al. 2019): printable Latin-1
    bytes stand for themselves, the other 68 for the code points from 256 up, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\xa1"), ord("\xac") + 1), *range(ord("\xae"), 256)]
    others = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + n) for n, b in enumerate(others)}}


Tokenizer = CharTokenizer | WordTokenizer | BPETokenizer
TOKENIZERS = {"char": CharTokenizer, "word": WordTokenizer, "bpe": BPETokenizer}


def keep_frequent(counts: Counter, spec: TokenizerSpec) -> list[str]:
    """Tokens seen at least min_freq times, most frequent first, at most vocab_size minus the specials."""
    ranked = sorted((t for t, c in counts.items() if c >= spec.min_freq), key=lambda t: (-counts[t], t))
    return ranked if spec.vocab_size is None else ranked[: spec.vocab_size - len(SPECIALS)]


def train_tokenizer(documents: Iterable[Iterable[str]], spec: TokenizerSpec) -> Tokenizer:
    """Build the vocabulary (or BPE merges) in one pass over the documents' lines."""
    return TOKENIZERS[spec.kind].train(documents, spec)


def tokenizer_from_json(obj: dict) -> Tokenizer:
    """Rebuild a tokenizer from what `to_json` wrote; a UserError if it is not one."""
    refused = UserError("tokenizer.json is not a scratchlm tokenizer (damaged or from another tool)")
    if not isinstance(obj, dict) or obj.get("format") != FORMAT or obj.get("kind") not in TOKENIZERS:
        raise refused
    if obj["kind"] == "bpe":
        from tokenizers import Tokenizer as HFTokenizer

        try:
            return BPETokenizer(HFTokenizer.from_str(json.dumps(obj.get("tokenizer"))))
        except Exception:  # the library's own parse error: the file is not what we wrote
            raise refused from None
    tokens = obj.get("tokens")
    if (not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens)
            or tuple(tokens[: len(SPECIALS)]) != SPECIALS or len(set(tokens)) != len(tokens)
            or (obj["kind"] == "char" and any(len(t) != 1 for t in tokens[len(SPECIALS):]))):
        raise refused
    if obj["kind"] == "word" and "phrases" in obj:
        phrases = obj["phrases"]
        if not (isinstance(phrases, list) and all(isinstance(joined, list) and all(
                isinstance(pair, list) and len(pair) == 2 and all(isinstance(w, str) for w in pair) for pair in joined)
                for joined in phrases)):
            raise refused
        return WordTokenizer(tokens, phrases)
    return TOKENIZERS[obj["kind"]](tokens)


def tokenizer_from_file(path: Path) -> Tokenizer:
    """A run's tokenizer.json; a UserError naming the file if it is missing, not JSON, or not a tokenizer."""
    try:
        return tokenizer_from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise UserError(f"{path}: missing; the run cannot be rebuilt without its vocabulary") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path}: damaged (not JSON); the run cannot be rebuilt") from None
    except UserError as e:
        raise UserError(f"{path}: {str(e).removeprefix('tokenizer.json ')}") from None


def encode_documents(tokenizer: Tokenizer, documents: Iterable[Iterable[str]]) -> Iterator[np.ndarray]:
    """The id stream of a corpus, in pieces: <doc> before each document, then its lines' ids.

    The separator before the first document too gives every document the same start context, which
    `score` reuses to ask "how likely is this sentence as the start of a text".
    """
    for lines in documents:
        yield np.array([DOC], dtype=np.int64)
        batch: list[str] = []
        size = 0
        for line in lines:
            batch.append(line)
            size += len(line)
            if size >= 1 << 20:  # encode ~1M characters at a time: fast, and memory stays flat
                yield tokenizer.encode_block("".join(batch))
                batch, size = [], 0
        if batch:
            yield tokenizer.encode_block("".join(batch))


def spec_dict(spec: TokenizerSpec) -> dict:
    """The spec as saved; without the phrase fields when no phrases are learnt, so a spec written before
    they existed keeps its cache key."""
    values = asdict(spec)
    if not spec.phrases:
        del values["phrases"], values["phrase_threshold"]
    return values
