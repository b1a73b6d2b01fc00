"""Word vectors of any run that has them: nearest words, analogies, the standard evaluations, a 2-D map,
hard debiasing, and the word2vec file formats in and out.

A run has word vectors when its class offers `word_vectors() -> (words, matrix)`: a word2vec run's
input vectors, or the input embedding of a word-level language model. `WordVectorVerbs` turns that
one method into the verbs, so every such run answers them alike:

    run = scratchlm.load("runs/w2v")
    run.similar("king", n=10)                 # [("queen", 0.71), ...]
    run.analogy("man", "woman", "king")       # man is to woman as king is to ?
    run.eval(analogies="questions-words.txt", similarity="wordsim353.tsv")

Cosine similarity throughout: the rows are compared as unit vectors (Mikolov et al. 2013a).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from scratchlm.errors import UserError, closest

METHODS = ("3cosadd", "3cosmul")
MAP_METHODS = ("pca", "tsne")
EXPORT_FORMATS = ("text", "binary", "tsv")
UNICODE_ERRORS = ("strict", "replace", "ignore")
# Bolukbasi et al. 2016's definitional pairs (their appendix C), the gender direction's default
DEFINITIONAL_PAIRS = (("woman", "man"), ("girl", "boy"), ("she", "he"), ("mother", "father"), ("daughter", "son"),
                      ("gal", "guy"), ("female", "male"), ("her", "his"), ("herself", "himself"), ("Mary", "John"))
EQUALIZE_PAIRS = (("woman", "man"), ("girl", "boy"), ("she", "he"), ("mother", "father"), ("daughter", "son"),
                  ("her", "his"), ("herself", "himself"), ("queen", "king"), ("sister", "brother"), ("wife", "husband"))
# Occupations their paper lists as the most gendered ones; the words whose projection the report shows
NEUTRAL_WORDS = ("homemaker", "nurse", "receptionist", "librarian", "socialite", "hairdresser", "nanny", "bookkeeper",
                 "stylist", "housekeeper", "maestro", "skipper", "protege", "philosopher", "captain", "architect",
                 "financier", "warrior", "broadcaster", "magician", "doctor", "engineer", "programmer", "teacher",
                 "scientist", "soldier", "dancer", "singer", "writer", "president")


class WordVectors:
    """Words and their vectors; every verb below works on the unit rows (`unit`)."""

    def __init__(self, words: Sequence[str], matrix: np.ndarray, source: str = "the vectors"):
        if len(words) != len(matrix):
            raise ValueError("one vector per word")
        if len(words) == 0:
            raise UserError(f"{source} hold no words")
        self.words = list(words)
        self.matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        self.source = source
        self.index = {}
        for i, word in enumerate(self.words):  # the first of a repeated word wins, as in the word2vec tool
            self.index.setdefault(word, i)
        norms = np.linalg.norm(self.matrix, axis=1, keepdims=True)
        self.unit = self.matrix / np.where(norms > 0, norms, 1)

    def __len__(self) -> int:
        return len(self.words)

    @property
    def dim(self) -> int:
        return self.matrix.shape[1]

    def row(self, word: str) -> int:
        """The row of `word`; an unknown word is one line naming the closest known ones."""
        if word in self.index:
            return self.index[word]
        near = closest(word, self.words)
        hint = f"; the closest known words: {', '.join(near)}" if near else ""
        raise UserError(f"{word!r} is not in the vocabulary of {self.source} ({len(self):,} words){hint}")

    def similar(self, word: str, n: int = 10, restrict_vocab: int | None = None) -> list[tuple[str, float]]:
        """The `n` words nearest to `word` by cosine similarity, the word itself left out."""
        check_count(n, "-n")
        return self.nearest(self.unit[self.row(word)], n, {self.row(word)}, restrict_vocab)

    def nearest(self, query: np.ndarray, n: int, exclude: Iterable[int] = (), restrict_vocab: int | None = None,
                scores: np.ndarray | None = None) -> list[tuple[str, float]]:
        if scores is None:
            scores = self.unit[:restrict_vocab] @ query
        scores = scores.astype(np.float64)
        for i in exclude:
            if i < len(scores):
                scores[i] = -np.inf
        n = min(n, int(np.isfinite(scores).sum()))
        top = np.argpartition(-scores, n - 1)[:n] if 0 < n < len(scores) else np.arange(len(scores))[:n]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self.words[i], float(scores[i])) for i in top]

    def analogy(self, a: str, b: str, c: str, n: int = 5, method: str = "3cosadd", include_inputs: bool = False,
                restrict_vocab: int | None = None) -> list[tuple[str, float]]:
        """a is to b as c is to ?: the `n` best answers.

        3CosAdd (Mikolov et al. 2013c): argmax_x cos(x, b) - cos(x, a) + cos(x, c). 3CosMul (Levy and
        Goldberg 2014, eq. 4): argmax_x cos(x, b) cos(x, c) / (cos(x, a) + 0.001), each cosine shifted
        to [0, 1]. The three inputs are left out of the answers unless `include_inputs`: the nearest
        word to b - a + c is often b or c themselves, and hiding that makes analogies look better than
        the vectors are (Linzen 2016; Nissim et al. 2020).
        """
        check_count(n, "-n")
        rows = [self.row(w) for w in (a, b, c)]
        scores = analogy_scores(self.unit[:restrict_vocab], self.unit[rows], method)
        return self.nearest(None, n, () if include_inputs else rows, restrict_vocab, scores=scores)

    # ------------------------------------------------------------ the standard evaluations

    def eval_analogies(self, path: str | Path, restrict_vocab: int | None = 30_000, method: str = "3cosadd",
                       case_insensitive: bool = True) -> dict:
        """Accuracy on an analogy file (`: section` headers, then `a b c d` per line: a is to b as c is to d),
        per section and overall, as the word2vec tool's compute-accuracy and gensim score it: only the
        `restrict_vocab` most frequent words take part (30,000, the figure published results use), a
        question with a word outside them is skipped (and counted), the inputs are never the answer,
        and case is ignored (the most frequent spelling of a word stands for it)."""
        check_method(method)
        sections = read_analogies(path)
        limit = len(self) if restrict_vocab is None else min(restrict_vocab, len(self))
        vocab = self.case_index(limit, case_insensitive)
        unit = self.unit[:limit]
        fold = str.upper if case_insensitive else str
        rows, total = [], 0
        for name, questions in sections:
            known = [[vocab[fold(w)] for w in q] for q in questions if all(fold(w) in vocab for w in q)]
            total += len(questions)
            correct = 0
            for start in range(0, len(known), 128):  # 128 questions x 3 x 30,000 words: 46 MB of scores
                block = np.array(known[start:start + 128])  # (Q, 4)
                scores = analogy_scores(unit, unit[block[:, :3]], method)  # (Q, V)
                np.put_along_axis(scores, block[:, :3], -np.inf, axis=1)
                correct += int((scores.argmax(1) == block[:, 3]).sum())
            rows.append({"section": name, "correct": correct, "questions": len(known),
                         "skipped": len(questions) - len(known), "accuracy": correct / len(known) if known else 0.0})
        correct, asked = sum(r["correct"] for r in rows), sum(r["questions"] for r in rows)
        return {"accuracy": correct / asked if asked else 0.0, "correct": correct, "questions": asked,
                "skipped": total - asked, "sections": rows, "restrict_vocab": restrict_vocab, "method": method}

    def eval_similarity(self, path: str | Path, restrict_vocab: int | None = None, case_insensitive: bool = True) -> dict:
        """Spearman's and Pearson's correlation between the cosine of each word pair and the human score
        (WordSim-353, SimLex-999: `word1<TAB>word2<TAB>score` lines, `#` comments), over the pairs whose
        words are both known; the out-of-vocabulary ratio is the share of pairs left out."""
        from scipy.stats import pearsonr, spearmanr

        pairs = read_similarity(path)
        limit = len(self) if restrict_vocab is None else min(restrict_vocab, len(self))
        vocab = self.case_index(limit, case_insensitive)
        fold = str.upper if case_insensitive else str
        known = [(vocab[fold(a)], vocab[fold(b)], score) for a, b, score in pairs if fold(a) in vocab and fold(b) in vocab]
        result = {"pairs": len(known), "oov_ratio": 1 - len(known) / len(pairs)}
        if len(known) < 3:
            return {**result, "spearman": math.nan, "pearson": math.nan}
        a, b, human = (np.array(column) for column in zip(*known, strict=True))
        cosines = (self.unit[a] * self.unit[b]).sum(1)
        return {**result, "spearman": float(spearmanr(cosines, human)[0]), "pearson": float(pearsonr(cosines, human)[0])}

    def case_index(self, limit: int, case_insensitive: bool) -> dict[str, int]:
        """Word -> row among the first `limit`; upper-cased, the most frequent spelling kept (gensim's way)."""
        if not case_insensitive:
            return {w: i for i, w in enumerate(self.words[:limit])}
        index: dict[str, int] = {}
        for i, word in enumerate(self.words[:limit]):
            index.setdefault(word.upper(), i)
        return index

    # ------------------------------------------------------------ a picture

    def project(self, words: Sequence[str], method: str = "pca", seed: int = 0) -> np.ndarray:
        """The words' vectors in 2-D: PCA (the two directions of most variance), or t-SNE (van der Maaten
        and Hinton 2008, scikit-learn's), which keeps neighbours together rather than distances."""
        if method not in MAP_METHODS:
            raise UserError(f"unknown map method {method!r}; choose one of {', '.join(MAP_METHODS)}")
        if len(words) < 3:
            raise UserError(f"a map needs at least 3 words, got {len(words)}")
        x = self.unit[[self.row(w) for w in words]].astype(np.float64)
        x = x - x.mean(0)
        if method == "pca":
            _, _, vt = np.linalg.svd(x, full_matrices=False)
            return x @ vt[:2].T
        from sklearn.manifold import TSNE

        perplexity = min(30.0, (len(words) - 1) / 3)
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)

    # ------------------------------------------------------------ debiasing (Bolukbasi et al. 2016)

    def bias_direction(self, pairs: Sequence[tuple[str, str]] = DEFINITIONAL_PAIRS) -> tuple[np.ndarray, list]:
        """The first principal component of the definitional pairs' differences (Bolukbasi et al. 2016, 5.1):
        each pair is centred on its mean, and the direction that explains most of what remains is the bias
        direction g. Pairs with an unknown word are left out (and returned)."""
        known = [(a, b) for a, b in pairs if a in self.index and b in self.index]
        if len(known) < 2:
            raise UserError(f"the bias direction needs at least 2 pairs of known words; {self.source} knows "
                            f"{len(known)} of {len(pairs)} (give --pairs FILE with pairs it has)")
        centred = []
        for a, b in known:
            va, vb = self.unit[self.index[a]], self.unit[self.index[b]]
            mean = (va + vb) / 2
            centred += [va - mean, vb - mean]
        _, _, vt = np.linalg.svd(np.array(centred, dtype=np.float64), full_matrices=False)
        g = vt[0]
        first = known[0]
        if (self.unit[self.index[first[0]]] - self.unit[self.index[first[1]]]) @ g < 0:
            g = -g  # oriented from the second word of the first pair to its first: he -> she is positive
        return g / np.linalg.norm(g), [p for p in pairs if p not in known]

    def debiased(self, direction: np.ndarray, neutral: Iterable[int], equalize: Sequence[tuple[str, str]]) -> WordVectors:
        """Hard debiasing (Bolukbasi et al. 2016, 5.1): neutralize, then equalize; a new set of unit vectors.

        Neutralize: each word of `neutral` loses its component along the bias direction g and is made
        unit again: w <- (w - (w.g) g) / |...|. Equalize: each pair (a, b) is moved to the same distance
        from every neutral word: both take the pair's mean without its g component, mu_perp, plus
        +-sqrt(1 - |mu_perp|^2) along g, each on its own side.
        """
        g = direction.astype(np.float32)
        unit = self.unit.copy()
        rows = np.fromiter(neutral, dtype=np.int64)
        unit[rows] -= np.outer(unit[rows] @ g, g)
        unit[rows] /= np.maximum(np.linalg.norm(unit[rows], axis=1, keepdims=True), 1e-12)
        for a, b in equalize:
            if a not in self.index or b not in self.index:
                continue
            ia, ib = self.index[a], self.index[b]
            mu = (unit[ia] + unit[ib]) / 2
            mu_perp = mu - (mu @ g) * g
            scale = math.sqrt(max(1 - float(mu_perp @ mu_perp), 0.0))
            for i in (ia, ib):
                side = 1.0 if (unit[i] - mu) @ g >= 0 else -1.0
                unit[i] = mu_perp + side * scale * g
        return WordVectors(self.words, unit, self.source)

    # ------------------------------------------------------------ files

    def export(self, path: str | Path, format: str = "text") -> list[Path]:
        """Write the vectors as the word2vec tool's text or binary format, or as two TSV files for an
        embedding projector (VECTORS.tsv: one vector a line, tab-separated; VECTORS-metadata.tsv: its word).
        The words must not hold whitespace in the word2vec formats: theirs is the separator."""
        if format not in EXPORT_FORMATS:
            raise UserError(f"unknown export format {format!r}; choose one of {', '.join(EXPORT_FORMATS)}")
        from scratchlm.files import atomic_write

        path = Path(path)
        if format == "tsv":
            metadata = path.with_name(path.stem + "-metadata" + (path.suffix or ".tsv"))
            atomic_write(path, format_rows(self.matrix, "\t").encode())
            atomic_write(metadata, ("\n".join(w.replace("\t", " ") for w in self.words) + "\n").encode("utf-8"))
            return [path, metadata]
        if bad := next((w for w in self.words if re.search(r"\s", w)), None):
            raise UserError(f"the word {bad!r} holds whitespace, which the word2vec format cannot store; export as tsv")
        header = f"{len(self)} {self.dim}\n".encode()
        if format == "text":
            lines = format_rows(self.matrix, " ").splitlines()
            body = "".join(f"{w} {line}\n" for w, line in zip(self.words, lines, strict=True)).encode("utf-8")
        else:
            vectors = self.matrix.astype("<f4")
            body = b"".join(w.encode("utf-8") + b" " + vectors[i].tobytes() + b"\n" for i, w in enumerate(self.words))
        atomic_write(path, header + body)
        return [path]


def format_rows(matrix: np.ndarray, separator: str) -> str:
    """Each row as text, 9 significant digits: a float32 reads back bit for bit."""
    import io

    buffer = io.StringIO()
    np.savetxt(buffer, matrix, fmt="%.9g", delimiter=separator)
    return buffer.getvalue()


def analogy_scores(unit: np.ndarray, queries: np.ndarray, method: str) -> np.ndarray:
    """Scores of every row against a is to b as c is to ?; `queries` (Q, 3, D) or (3, D) unit vectors a, b, c."""
    check_method(method)
    single = queries.ndim == 2
    q = queries[None] if single else queries
    cos = (q.reshape(-1, q.shape[-1]) @ unit.T).reshape(len(q), 3, len(unit))  # (Q, 3, V)
    if method == "3cosadd":
        scores = cos[:, 1] - cos[:, 0] + cos[:, 2]
    else:
        cos = (cos + 1) / 2
        scores = cos[:, 1] * cos[:, 2] / (cos[:, 0] + 1e-3)
    return scores[0] if single else scores


def check_method(method: str) -> None:
    if method not in METHODS:
        raise UserError(f"unknown analogy method {method!r}; choose one of {', '.join(METHODS)}")


def check_count(n: int, option: str) -> None:
    if not 1 <= n <= 100_000:
        raise UserError(f"{option} {n} must be between 1 and 100,000")


def read_bytes(path: Path, what: str) -> bytes:
    """The bytes of the `what` file at `path`; one clear line when it is missing, a folder, or unreadable."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file ({what})") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder; give the {what} file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot be read ({e.strerror})") from None


def read_text_lines(path: str | Path, what: str) -> list[str]:
    path = Path(path)
    data = read_bytes(path, what)
    if b"\0" in data[:4096]:
        raise UserError(f"{path}: a binary file, not the {what} text file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 (byte {e.start}); the {what} file must be UTF-8 text") from None
    if not text.strip():
        raise UserError(f"{path}: empty; it holds no {what}")
    return text.splitlines()


def read_analogies(path: str | Path) -> list[tuple[str, list[list[str]]]]:
    """[(section, [[a, b, c, d], ...]), ...] from the word2vec tool's questions-words format."""
    sections: list[tuple[str, list[list[str]]]] = []
    for number, line in enumerate(read_text_lines(path, "analogy questions"), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith(":"):
            sections.append((line[1:].strip() or f"section {len(sections) + 1}", []))
            continue
        words = line.split()
        if len(words) != 4:
            raise UserError(f"{path}:{number}: an analogy line holds 4 words (a b c d), this one {len(words)}")
        if not sections:
            sections.append(("questions", []))
        sections[-1][1].append(words)
    if not any(q for _, q in sections):
        raise UserError(f"{path}: no analogy questions (lines of 4 words, under `: section` headers)")
    return sections


def read_similarity(path: str | Path) -> list[tuple[str, str, float]]:
    """[(word1, word2, score), ...]; `#` lines are comments."""
    pairs = []
    for number, line in enumerate(read_text_lines(path, "word-pair similarity"), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        try:
            if len(fields) < 3:
                raise ValueError
            pairs.append((fields[0].strip(), fields[1].strip(), float(fields[2])))
        except ValueError:
            raise UserError(f"{path}:{number}: expected word1<TAB>word2<TAB>score, got {line[:60]!r}") from None
    if not pairs:
        raise UserError(f"{path}: no word pairs (word1<TAB>word2<TAB>score lines)")
    return pairs


def read_word2vec(path: str | Path, binary: bool | None = None, unicode_errors: str = "strict",
                  limit: int | None = None) -> WordVectors:
    """Vectors in the word2vec tool's format: a `COUNT DIM` line, then one word and its DIM numbers a line
    (text) or the word, a space and DIM little-endian float32s (binary). `binary=None` tells them apart
    from the first record. Bytes that are not UTF-8 in a word stop the reading with the word's place,
    unless `unicode_errors` is "replace" (U+FFFD) or "ignore" (dropped), as the user chooses."""
    if unicode_errors not in UNICODE_ERRORS:
        raise UserError(f"--unicode-errors {unicode_errors!r}: choose one of {', '.join(UNICODE_ERRORS)}")
    path = Path(path)
    data = read_bytes(path, "word2vec vectors")
    if not data.strip():
        raise UserError(f"{path}: empty; a word2vec file starts with a `COUNT DIM` line")
    end = data.find(b"\n")
    header = data[: end if end >= 0 else len(data)].split()
    if len(header) != 2 or not all(h.isdigit() for h in header):
        raise UserError(f"{path}: not a word2vec file: its first line should be `COUNT DIM` (two numbers), "
                        f"not {data[:40]!r}")
    count, dim = int(header[0]), int(header[1])
    if count < 1 or dim < 1:
        raise UserError(f"{path}: the header says {count} words of {dim} numbers; nothing to read")
    count = min(count, limit) if limit else count
    body = data[end + 1:]
    if binary is None:
        binary = not looks_like_text(body, dim)
    words, vectors = (read_binary if binary else read_text)(path, body, count, dim, unicode_errors)
    return WordVectors(words, vectors, str(path))


def looks_like_text(body: bytes, dim: int) -> bool:
    first = body.split(b"\n", 1)[0].split()
    if len(first) != dim + 1:
        return False
    try:
        [float(x) for x in first[1:]]
    except ValueError:
        return False
    return True


def decode_word(raw: bytes, path: Path, where: str, unicode_errors: str) -> str:
    try:
        return raw.decode("utf-8", errors=unicode_errors)
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: {where}: the word {raw[:30]!r} is not UTF-8 (byte {e.start}); "
                        "pass --unicode-errors replace or ignore to read it anyway") from None


def read_text(path: Path, body: bytes, count: int, dim: int, unicode_errors: str) -> tuple[list[str], np.ndarray]:
    lines = body.split(b"\n")
    words, vectors = [], np.zeros((count, dim), dtype=np.float32)
    for i in range(count):
        if i >= len(lines) or not lines[i].strip():
            raise UserError(f"{path}: the header promises {count:,} words; the file ends after {i:,}")
        fields = lines[i].rstrip().split(b" ")
        if len(fields) != dim + 1:
            raise UserError(f"{path}: line {i + 2} has {len(fields) - 1} numbers; the header says {dim}")
        words.append(decode_word(fields[0], path, f"line {i + 2}", unicode_errors))
        try:
            vectors[i] = np.array(fields[1:], dtype=np.float32)
        except ValueError:
            raise UserError(f"{path}: line {i + 2}: not a number among its {dim} values") from None
    return words, vectors


def read_binary(path: Path, body: bytes, count: int, dim: int, unicode_errors: str) -> tuple[list[str], np.ndarray]:
    words, vectors = [], np.zeros((count, dim), dtype=np.float32)
    at, size = 0, 4 * dim
    for i in range(count):
        while at < len(body) and body[at:at + 1] in (b"\n", b"\r"):
            at += 1
        space = body.find(b" ", at)
        if space < 0 or space + 1 + size > len(body):
            raise UserError(f"{path}: the header promises {count:,} words; the file ends after {i:,} "
                            "(truncated, or a text file: drop --binary)")
        words.append(decode_word(body[at:space], path, f"word {i + 1}", unicode_errors))
        vectors[i] = np.frombuffer(body, dtype="<f4", count=dim, offset=space + 1)
        at = space + 1 + size
    if not np.isfinite(vectors).all():
        raise UserError(f"{path}: holds numbers that are not finite (NaN or inf); not word2vec binary, or damaged")
    return words, vectors


# ---------------------------------------------------------------- the verbs, for any run with word vectors


class WordVectorVerbs:
    """similar, analogy, map, export and debias for a Run class that defines `word_vectors()`."""

    @property
    def vectors(self) -> WordVectors:
        if getattr(self, "_vectors", None) is None:
            words, matrix = self.word_vectors()
            self._vectors = WordVectors(words, matrix, str(getattr(self, "path", "the vectors")))
        return self._vectors

    def similar(self, word: str, n: int = 10) -> list[tuple[str, float]]:
        """The `n` nearest words to `word` and their cosine similarities."""
        return self.vectors.similar(word, n)

    def analogy(self, a: str, b: str, c: str, n: int = 5, method: str = "3cosadd",
                include_inputs: bool = False) -> list[tuple[str, float]]:
        """a is to b as c is to ? (`analogy("man", "woman", "king")`): the `n` best answers and their scores."""
        return self.vectors.analogy(a, b, c, n, method, include_inputs)

    def map(self, words: Sequence[str] | None = None, top: int | None = None, out: str | Path = "map.png",
            method: str = "pca", seed: int = 0) -> dict:
        """A labelled 2-D picture of `words` (or of the `top` most frequent words) in `out`; the coordinates."""
        from scratchlm.plots import plot_words

        if (words is None) == (top is None):
            raise UserError("give the words to draw (--words a,b,c) or --top N, one of the two")
        if top is not None:
            check_count(top, "--top")
            words = [w for w in self.vectors.words if any(ch.isalpha() for ch in w)][:top]
        words = list(dict.fromkeys(words))
        points = self.vectors.project(words, method, seed)
        name = {"pca": "PCA", "tsne": "t-SNE"}[method]
        labelled = plot_words(words, points, out, f"{Path(str(getattr(self, 'path', ''))).name}: {name} of {len(words)} words")
        return {"out": str(out), "method": method, "words": words, "points": points.tolist(), "labelled": labelled}

    def export(self, out: str | Path, format: str = "text") -> list[str]:
        """The vectors in the word2vec text or binary format, or TSV for an embedding projector."""
        return [str(p) for p in self.vectors.export(out, format)]


def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    """Word pairs, two a line (`she he`), `#` comments: the definitional or equalize pairs of debiasing."""
    pairs = []
    for number, line in enumerate(read_text_lines(path, "word pairs"), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        words = line.split()
        if len(words) != 2:
            raise UserError(f"{path}:{number}: a pair is two words a line, this line has {len(words)}")
        pairs.append((words[0], words[1]))
    return pairs
