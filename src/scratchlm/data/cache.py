"""The token cache: a corpus' ids on disk as a numpy memmap, keyed by content hash and tokenizer.

A second run on the same file and tokenizer reads the cache instead of tokenizing again, and training
reads batches straight from the memmap: the corpus is never held in memory, so RAM stays flat as the
corpus grows. Entries are written to a temporary folder and renamed into place, so a run killed while
tokenizing leaves no half-written entry behind.

    CACHE/<key>/ids.bin         the ids, uint16 or uint32, back to back
                meta.json       dtype, length, and the lines whose mojibake was repaired
                tokenizer.json  the tokenizer the ids belong to

A write that fails (a full disk, a file-size limit) removes its temporary folder: no entry is left half
written, and the error names the cache folder and the cause.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from scratchlm.data.read import Corpus
from scratchlm.data.tokenize import (
    Tokenizer,
    TokenizerSpec,
    encode_documents,
    spec_dict,
    tokenizer_from_json,
    train_tokenizer,
)
from scratchlm.errors import UserError

CACHE_VERSION = 1


def default_cache_dir() -> Path:
    """$SCRATCHLM_CACHE, else $XDG_CACHE_HOME/scratchlm, else ~/.cache/scratchlm."""
    if env := os.environ.get("SCRATCHLM_CACHE"):
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "scratchlm"


def cache_key(corpus: Corpus, tokenizer: TokenizerSpec | dict) -> str:
    """The entry for these bytes, decoded this way, tokenized this way."""
    what = tokenizer if isinstance(tokenizer, dict) else spec_dict(tokenizer)
    key = {"v": CACHE_VERSION, "content": corpus.content_hash, "encodings": [s.encoding for s in corpus.sources],
           "tokenizer": what}
    if corpus.repair:  # text read as it was keeps the keys it always had
        key["repair"] = True
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]


class Tokenized(NamedTuple):
    """A corpus' ids and the tokenizer they belong to."""

    tokenizer: Tokenizer
    ids: np.memmap
    repaired_lines: int  # lines whose mojibake was repaired as they were read


def tokenize_corpus(corpus: Corpus, tokenizer: TokenizerSpec | Tokenizer, cache_dir: Path | None = None) -> Tokenized:
    """The tokenizer (trained from `corpus` when given a spec) and the corpus' ids, from the cache if there.

    Given a spec, a new tokenizer is trained on the corpus; given a tokenizer (a run's own, to
    evaluate on new text), the corpus is encoded with it as it is.
    """
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    key = cache_key(corpus, tokenizer if isinstance(tokenizer, TokenizerSpec) else tokenizer.to_json())
    entry = cache_dir / key
    if not (entry / "meta.json").exists():
        if isinstance(tokenizer, TokenizerSpec):
            tokenizer = train_tokenizer(corpus.texts(), tokenizer)
        try:
            write_entry(entry, tokenizer, corpus)
        except OSError as e:  # a full disk, a file-size limit, no permission: the entry was never made
            raise UserError(f"{cache_dir}: cannot write the token cache ({e.strerror or e}); free space there or "
                            "choose another --cache-dir") from None
    return read_entry(entry)


def write_entry(entry: Path, tokenizer: Tokenizer, corpus: Corpus) -> None:
    entry.parent.mkdir(parents=True, exist_ok=True)
    dtype = np.uint16 if tokenizer.vocab_size <= np.iinfo(np.uint16).max + 1 else np.uint32
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        length, repaired = 0, [0]
        with open(tmp / "ids.bin", "wb") as f:
            for ids in encode_documents(tokenizer, corpus.texts(repaired)):
                f.write(ids.astype(dtype).tobytes())
                length += len(ids)
        (tmp / "tokenizer.json").write_text(json.dumps(tokenizer.to_json()))
        (tmp / "meta.json").write_text(json.dumps({"dtype": np.dtype(dtype).name, "length": length,
                                                   "corpus": corpus.spec, "repaired_lines": repaired[0]}))
        try:
            os.rename(tmp, entry)
        except OSError:  # another process filled the same entry first: theirs is as good as ours
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_entry(entry: Path) -> Tokenized:
    meta = json.loads((entry / "meta.json").read_text())
    tokenizer = tokenizer_from_json(json.loads((entry / "tokenizer.json").read_text()))
    ids = np.memmap(entry / "ids.bin", dtype=meta["dtype"], mode="r", shape=(meta["length"],))
    return Tokenized(tokenizer, ids, meta.get("repaired_lines", 0))
