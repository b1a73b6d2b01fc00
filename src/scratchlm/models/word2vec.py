"""word2vec (Mikolov et al. 2013a, 2013b): skip-gram and CBOW with negative sampling, trained by plain SGD.

Each word w has two vectors: an input vector v_w (the word vector that is kept) and an output vector
v'_w. Skip-gram reads a centre word w_I and asks its output layer for each context word w_O of the
window; CBOW (continuous bag of words) reads the mean h of the context's input vectors and asks for
the centre. Negative sampling (2013b, eq. 4) replaces the softmax over the vocabulary by k logistic
regressions: the true word against k "negative" words drawn from the unigram distribution U(w)^(3/4)/Z:

    loss(w_I, w_O) = -log sigma(v'_wO . h) - sum_{i=1..k} log sigma(-v'_wi . h),   wi ~ U^(3/4)/Z

with h = v_wI for skip-gram. The gradients are written out by hand (Rong 2014, "word2vec parameter
learning explained", eq. 56-61): with g = sigma(s) - label for each score s,

    dloss/dv'_w = g_w h         dloss/dh = sum_w g_w v'_w

and applied to the rows a batch touches with `index_add_`: no autograd graph, no optimizer state, no
dense update of the two V x D matrices. A batch's rows take the sum of their pairs' steps (a word seen
twice in one batch moves twice), as word2vec's threads do lock-free (Hogwild, Recht et al. 2011).

Shared negatives (Ji et al. 2016, "Parallelizing word2vec in shared and distributed memory"; the
minibatching of BlazingText, Gupta and Khare 2017): a batch draws `shared_negatives` words once, and
every pair of the batch scores all of them, each weighted k / shared_negatives. The expected loss and
gradient are those of k draws per pair, and the scores become one matrix product (B x D by D x M)
instead of B x k dot products gathered one by one: the step that makes this fast on a CPU. Under
`--precision bf16` (auto's choice on a CPU with AVX-512 bf16 dot products, `precision_rule`) the step's
three products with the shared negatives run in bf16, accumulated in fp32 and each result rounded to bf16
before it is taken back to fp32, while every vector stays fp32: the products are about 3x faster there,
and the vectors score as fp32's do (docs/recipes.md has the measurements).

The hierarchical softmax (`loss="hs"`, 2013b sec. 2.1) replaces the negatives by a true softmax whose
cost is a word's path in a Huffman tree of the counts (models/huffman.py): with t_n = 1 - code_n for
each inner node n on the path of w_O and u_n its vector (word2vec's syn1),

    p(w_O | h) = prod_n sigma((2 t_n - 1) u_n . h)      loss = -log p(w_O | h) = sum_n softplus((2 code_n - 1) u_n . h)

    dloss/du_n = (sigma(u_n . h) - t_n) h               dloss/dh = sum_n (sigma(u_n . h) - t_n) u_n

the same shape of step as negative sampling's, with the path's nodes in place of the true word and the
negatives. The nodes near the root are on nearly every path, so a batch's steps pile up on them: summed
over a whole batch they diverge, where word2vec's one-pair-at-a-time steps correct each other. So the
hierarchical softmax takes a batch `HS_PAIRS` (256) pairs at a time, each a step of its own, which learns as
small batches do (docs/recipes.md). The tree (codes and points per word, padded) is built from the counts
when a run starts and is kept with the weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from scratchlm.data.contexts import ContextBatches, ValidationPairs, Words
from scratchlm.errors import UserError
from scratchlm.models.base import WordVectorModel
from scratchlm.models.huffman import MAX_CODE_LENGTH, huffman_tree
from scratchlm.speed import PrecisionRule

LOSSES = ("ns", "hs")
HS_PAIRS = 256  # the hierarchical softmax steps through a batch this many pairs at a time (see sgd_step)
# A bf16 step pads its pairs to a multiple of this many rows: oneDNN builds a kernel for each new shape of a
# bf16 product (about 1 ms, 25x the product), and the pairs of a batch vary in number from batch to batch
BF16_ROWS = 128


def batched_dot(vectors: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """(B, n, D) . (B, D) -> (B, n): each row's n dot products with its own h. A multiply and a sum, not
    torch.bmm against (B, D, 1), a batch of one-column products: at a part's size (256 x 20 x 100, one
    thread) 0.09 ms against 0.35 ms on a quiet machine, and 0.09 against 1.9 beside another training."""
    return (vectors * h.unsqueeze(1)).sum(2)


def bf16_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    """x (B, n) in bf16, with zero rows after it up to `rows` (BF16_ROWS): one pass that casts and pads."""
    padded = x.new_zeros((rows, x.shape[1]), dtype=torch.bfloat16)
    padded[:len(x)] = x
    return padded


def distinct_rows(index: torch.Tensor, n_rows: int) -> torch.Tensor:
    """The rows `index` names, each once, in order: a mark per row and the marked ones, where `unique`'s sort
    took 15x as long (20,000 indices, one thread: 0.06 ms against 0.93 ms)."""
    marked = torch.zeros(n_rows, dtype=torch.bool)
    marked[index] = True
    return marked.nonzero().squeeze(1)


@dataclass
class Word2VecConfig:
    """word2vec's settings; the defaults are the word2vec tool's and gensim's."""

    vocab_size: int = 1000  # rows: the word tokenizer's vocabulary (specials and the newline token never train)
    dim: int = 100  # length of a word vector
    window: int = 5  # most words on each side that count as context (each centre draws its own 1..window)
    negative: int = 5  # k: negative words per (centre, context) pair, from the unigram distribution^(3/4)
    shared_negatives: int = 64  # negatives drawn once per batch and scored by all its pairs (weight k/M);
    #                             0: k drawn for each pair, as the word2vec tool does. On WikiText-2 (means of
    #                             seeds 0-14 +- standard error) 64 gave analogies 1.51% +- 0.05 (gensim 1.51 +- 0.04),
    #                             32 1.35 +- 0.06 in 0.76x the time; WordSim-353 0.127 and 0.135 (gensim 0.088).
    #                             0 (medians of seeds 0-2) gave analogies 1.68% against 32's 1.29%, SimLex-999 0.046
    #                             against 0.073, in 2.4x 32's time
    sample: float = 1e-3  # t, the subsampling threshold: a word of frequency f is kept with probability
    #                       (sqrt(f/t) + 1) t/f, as the word2vec tool computes it; 0 keeps every word
    cbow: bool = False  # continuous bag of words: predict the centre from the mean of its context (else skip-gram)
    loss: str = "ns"  # ns: negative sampling; hs: the hierarchical softmax over a Huffman tree of the counts

    def __post_init__(self) -> None:
        if self.vocab_size < 1 or not 1 <= self.dim <= 10_000:
            raise UserError(f"dim {self.dim} must be between 1 and 10,000")
        if not 1 <= self.window <= 100:
            raise UserError(f"window {self.window} must be between 1 and 100")
        if not 1 <= self.negative <= 100:
            raise UserError(f"negative {self.negative} must be between 1 and 100")
        if not 0 <= self.shared_negatives <= 100_000:
            raise UserError(f"shared_negatives {self.shared_negatives} must be between 0 (k per pair) and 100,000")
        if not 0 <= self.sample < 1:
            raise UserError(f"sample {self.sample} must be in [0, 1); 1e-3 is word2vec's, 0 keeps every word")
        if self.loss not in LOSSES:
            raise UserError(f"loss {self.loss!r}: choose ns (negative sampling) or hs (hierarchical softmax)")


class Word2Vec(WordVectorModel):
    """The two embedding matrices. `input` holds the word vectors; `output` the context vectors of the
    negative-sampling objective (word2vec's syn0 and syn1neg)."""

    update_rule = "SGD, gradients written out"

    def __init__(self, config: Word2VecConfig):
        super().__init__()
        self.config = config
        V, D = config.vocab_size, config.dim
        self.input = nn.Embedding(V, D)
        # word2vec's start: input vectors uniform in [-0.5/D, 0.5/D], output vectors zero
        nn.init.uniform_(self.input.weight, -0.5 / D, 0.5 / D)
        if config.loss == "ns":
            self.output = nn.Embedding(V, D)
            nn.init.zeros_(self.output.weight)
        else:  # the inner nodes' vectors (V - 1 of them are used) and each word's path, filled by build_tree
            self.inner = nn.Embedding(V, D)
            nn.init.zeros_(self.inner.weight)
            self.register_buffer("codes", torch.zeros(V, MAX_CODE_LENGTH, dtype=torch.uint8))
            self.register_buffer("points", torch.zeros(V, MAX_CODE_LENGTH, dtype=torch.int64))
            self.register_buffer("code_lengths", torch.zeros(V, dtype=torch.int64))

    # -- the word-vector models' protocol (models/base.py: WordVectorModel)

    def take_counts(self, counts: np.ndarray) -> None:
        """The hierarchical softmax's Huffman tree of the word counts (V,); nothing for negative sampling."""
        if self.config.loss == "hs":
            for name, values in zip(("codes", "points", "code_lengths"), huffman_tree(counts), strict=True):
                getattr(self, name).copy_(torch.from_numpy(values))

    def path(self, words: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The inner nodes (B, L), turns (B, L, float) and a mask of the real steps (B, L) of each word's path,
        L the longest path among them."""
        lengths = self.code_lengths.index_select(0, words)
        L = max(int(lengths.max()), 1) if len(words) else 1
        mask = torch.arange(L) < lengths.unsqueeze(1)
        return self.points.index_select(0, words)[:, :L], self.codes.index_select(0, words)[:, :L].float(), mask

    def log_probability(self, h: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
        """log p(word | h) under the hierarchical softmax, for h (B, D) and words (B,)."""
        return -self.hs_losses(h, *self.path(words))[0].sum(1)

    def pair_sums(self, centres: torch.Tensor, contexts: torch.Tensor,
                  negatives: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A validation batch's summed loss and the pairs whose true context scores above all its k negatives:
        by the negative-sampling scores, or by log p under the hierarchical softmax."""
        h = self.hidden(centres)
        if self.config.loss == "hs":
            true = self.log_probability(h, contexts)
            others = torch.stack([self.log_probability(h, negatives[:, i]) for i in range(negatives.shape[1])], 1)
            return -true.sum(), (true > others.max(1).values).sum()
        positive, negative = self.scores(h, contexts, negatives)
        return self.pair_loss(positive, negative, shared=False).sum(), (positive > negative.max(1).values).sum()

    def training_batches(self, words: Words, batch_size: int, seed: int) -> tuple[ContextBatches, ValidationPairs]:
        """The (centre, context) pairs of the stream with their negatives, a block at a time; a fixed sample of
        them with k negatives each for the evaluations (scratchlm/data/contexts.py)."""
        train, valid = ContextBatches(words, self.config, batch_size, seed), ValidationPairs(words, self.config, seed)
        if len(valid) == 0:
            raise UserError("no word of the text has another beside it in its sentence (one word a line?); word2vec "
                            "learns a word from its neighbours")
        return train, valid

    def take_step(self, batch: tuple, lr: float, precision: str = "fp32") -> tuple[float, int]:
        inputs, mask, targets, negatives = batch
        loss = self.sgd_step(inputs, mask if mask.numel() else None, targets, negatives, lr, bf16=precision == "bf16")
        return loss, len(targets)

    def batch_loss(self, batch: tuple) -> tuple[torch.Tensor, int]:
        inputs, mask, targets, negatives = batch
        h = self.hidden(inputs, mask if mask.numel() else None)
        if self.config.loss == "hs":
            return -self.log_probability(h, targets).mean(), len(targets)
        positive, negative = self.scores(h, targets, negatives)
        return self.pair_loss(positive, negative, negatives.dim() == 1).mean(), len(targets)

    @torch.no_grad()
    def eval_sums(self, batch: tuple) -> tuple[torch.Tensor, torch.Tensor, int]:
        centres, contexts, negatives = batch
        loss, correct = self.pair_sums(centres, contexts, negatives)
        return loss, correct, len(centres)

    def precision_rule(self) -> PrecisionRule:
        """bf16 where AVX-512 has bf16 dot products, for the shared negatives' products; never for the other
        objectives, whose steps have none; never on a GPU, where it was not measured."""
        shared = self.config.loss == "ns" and self.config.shared_negatives
        return PrecisionRule("avx512_bf16" if shared else None, 0, on_gpu=False)

    def word_matrix(self) -> torch.Tensor:
        """The word vectors kept: the input vectors (V x D)."""
        return self.input.weight

    @property
    def negative_weight(self) -> float:
        """Each shared negative stands for k / M of a pair's k draws."""
        shared = self.config.shared_negatives
        return self.config.negative / shared if shared else 1.0

    def hidden(self, inputs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """h: the centre's input vector (skip-gram, inputs (B,)), or the mean of the context's (CBOW,
        inputs (B, 2W) with `mask` marking the real context words)."""
        W = self.input.weight
        if mask is None:
            return W.index_select(0, inputs)  # (B, D)
        B, C = inputs.shape
        vectors = W.index_select(0, inputs.reshape(-1)).view(B, C, -1)  # (B, 2W, D)
        return torch.bmm(mask.unsqueeze(1), vectors).squeeze(1) / mask.sum(1, keepdim=True)

    def scores(self, h: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The positive scores v'_wO . h (B,) and the negative ones: (B, M) against shared negatives (M,),
        or (B, k) against each pair's own (B, k)."""
        return self.scores_of(h, *self.outputs(targets, negatives))

    def outputs(self, targets: torch.Tensor, negatives: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The output vectors of the true words (B, D) and of the negatives ((M, D) shared, or (B, k, D))."""
        U = self.output.weight
        if negatives.dim() == 1:
            return U.index_select(0, targets), U.index_select(0, negatives)
        B, k = negatives.shape
        return U.index_select(0, targets), U.index_select(0, negatives.reshape(-1)).view(B, k, -1)

    @staticmethod
    def scores_of(h: torch.Tensor, u_true: torch.Tensor, u_negative: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        positive = (h * u_true).sum(1)
        if u_negative.dim() == 2:
            return positive, h @ u_negative.T  # (B, M): one matrix product for the whole batch
        return positive, batched_dot(u_negative, h)  # (B, k)

    def pair_loss(self, positive: torch.Tensor, negative: torch.Tensor, shared: bool) -> torch.Tensor:
        """Each pair's negative-sampling loss (eq. 4 of Mikolov et al. 2013b), softplus(-s) being -log sigma(s);
        `shared`: the negatives are the batch's, each weighted k / M."""
        return F.softplus(-positive) + F.softplus(negative).sum(1) * (self.negative_weight if shared else 1.0)

    @torch.no_grad()
    def sgd_step(self, inputs: torch.Tensor, mask: torch.Tensor | None, targets: torch.Tensor,
                 negatives: torch.Tensor, lr: float, bf16: bool = False) -> float:
        """One SGD step on a batch of pairs at rate `lr`; returns the batch's summed loss before the step
        (the hierarchical softmax steps a batch of over HS_PAIRS pairs in parts, and sums each part's loss
        before its own step: `hs_steps`). `bf16`: the products with shared negatives run in bf16.

        A loss that is not finite leaves the weights as they were, so the trainer's NaN policy (stop, or
        skip the batch) holds as it does for a step through the optimizer.
        """
        if len(targets) == 0:
            return 0.0
        if self.config.loss == "hs" and len(targets) > HS_PAIRS:
            return self.hs_steps(inputs, mask, targets, lr)
        h = self.hidden(inputs, mask)
        if self.config.loss == "hs":
            loss, grad_h = self.hs_output_step(h, self.path(targets), lr)
        else:
            loss, grad_h = self.ns_output_step(h, targets, negatives, lr, bf16)
        if grad_h is not None:
            self.input_step(inputs, mask, grad_h, lr)
        return loss

    def hs_steps(self, inputs: torch.Tensor, mask: torch.Tensor | None, targets: torch.Tensor, lr: float) -> float:
        """The hierarchical softmax's step per HS_PAIRS pairs (module docstring), each from the weights the one
        before left. Returns the sum of each part's loss before its own step, the running loss of sequential
        SGD (the word2vec tool's and gensim's): scoring the whole batch once more before the first step cost
        nearly as much as the steps (2.4-3.1 ms against 3.1-4.2 ms for the 1,000 pairs of one batch, one
        thread, a quiet machine; 23 against 4.4 beside another training). The rows the batch can move
        are copied first, and a part whose loss is not finite puts them back, so the batch leaves the weights
        as they were, as `sgd_step` promises. The paths are gathered once for the batch, and each part takes
        its rows, cut to its longest path."""
        points, codes, steps = self.path(targets)
        words = distinct_rows(inputs if mask is None else inputs[mask > 0], self.config.vocab_size)
        nodes = distinct_rows(points[steps], self.config.vocab_size)
        saved = self.input.weight.index_select(0, words), self.inner.weight.index_select(0, nodes)
        lengths = self.code_lengths.index_select(0, targets).tolist()
        loss = 0.0
        for start in range(0, len(targets), HS_PAIRS):
            part = slice(start, start + HS_PAIRS)
            L = max(max(lengths[part]), 1)
            part_mask = None if mask is None else mask[part]
            path = points[part, :L], codes[part, :L], steps[part, :L]
            part_loss, grad_h = self.hs_output_step(self.hidden(inputs[part], part_mask), path, lr)
            loss += part_loss
            if grad_h is None:
                self.input.weight.index_copy_(0, words, saved[0])
                self.inner.weight.index_copy_(0, nodes, saved[1])
                return loss
            self.input_step(inputs[part], part_mask, grad_h, lr)
        return loss

    def input_step(self, inputs: torch.Tensor, mask: torch.Tensor | None, grad_h: torch.Tensor, lr: float) -> None:
        """The input side of a step: the centre word (skip-gram) or every context word (CBOW) moves by -lr dloss/dh."""
        W = self.input.weight
        if mask is None:
            W.index_add_(0, inputs, grad_h, alpha=-lr)
        else:  # CBOW: every context word takes the whole gradient of h, as word2vec's cbow_mean does
            rows = mask.reshape(-1) > 0
            spread = grad_h.unsqueeze(1).expand(-1, inputs.shape[1], -1).reshape(-1, grad_h.shape[1])
            W.index_add_(0, inputs.reshape(-1)[rows], spread[rows], alpha=-lr)

    def ns_output_step(self, h: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor,
                       lr: float, bf16: bool = False) -> tuple[float, torch.Tensor | None]:
        """Negative sampling's side of a step: the output vectors move; (summed loss, dloss/dh), or (loss, None)
        with nothing moved when the loss is not finite."""
        if negatives.dim() == 1:
            return self.shared_ns_step(h, targets, negatives, lr, bf16)
        u_true, u_negative = self.outputs(targets, negatives)
        positive, negative = self.scores_of(h, u_true, u_negative)
        loss = self.pair_loss(positive, negative, shared=False).sum().item()
        if not math.isfinite(loss):
            return loss, None
        U = self.output.weight
        g_positive = (torch.sigmoid(positive) - 1).unsqueeze(1)  # (B, 1): d loss / d s for the true word
        g_negative = torch.sigmoid(negative)  # (B, k)
        B, k = negatives.shape
        grad_h = g_positive * u_true + torch.bmm(g_negative.unsqueeze(1), u_negative).squeeze(1)
        U.index_add_(0, negatives.reshape(-1), (g_negative.unsqueeze(2) * h.unsqueeze(1)).reshape(B * k, -1), alpha=-lr)
        U.index_add_(0, targets, g_positive * h, alpha=-lr)
        return loss, grad_h

    def shared_ns_step(self, h: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor,
                       lr: float, bf16: bool) -> tuple[float, torch.Tensor | None]:
        """`ns_output_step` against the batch's shared negatives (M,): the scores, dloss/dh and the negatives'
        pulls are three products, (B, D) x (D, M), (B, M) x (M, D) and (M, B) x (B, D), in bf16 when `bf16`
        (the rows padded to a multiple of BF16_ROWS; each product rounded to bf16, then taken back to fp32)."""
        B = len(h)
        u_true, u_negative = self.outputs(targets, negatives)
        if bf16:
            rows = -(-B // BF16_ROWS) * BF16_ROWS
            h_product, u_product = bf16_rows(h, rows), u_negative.to(torch.bfloat16)
        else:
            h_product, u_product = h, u_negative
        positive = (h * u_true).sum(1)
        negative = (h_product @ u_product.T)[:B].float()  # (B, M): one product for the whole batch
        loss = self.pair_loss(positive, negative, shared=True).sum().item()
        if not math.isfinite(loss):
            return loss, None
        U = self.output.weight
        g_positive = (torch.sigmoid(positive) - 1).unsqueeze(1)  # (B, 1): d loss / d s for the true word
        g_negative = torch.sigmoid(negative) * self.negative_weight  # (B, M)
        g_product = bf16_rows(g_negative, len(h_product)) if bf16 else g_negative
        grad_h = (g_product @ u_product)[:B].float() + g_positive * u_true
        U.index_add_(0, negatives, (g_product.T @ h_product).float(), alpha=-lr)  # (M, D): every pair's pull, summed
        U.index_add_(0, targets, g_positive * h, alpha=-lr)
        return loss, grad_h

    def hs_losses(self, h: torch.Tensor, points: torch.Tensor, codes: torch.Tensor,
                  steps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each path step's loss (B, L; 0 past the path's end), score (B, L) and node vector (B, L, D), for the
        padded paths that `path` gives, the scores a multiply and a sum (`batched_dot`)."""
        B, L = points.shape
        u = self.inner.weight.index_select(0, points.reshape(-1)).view(B, L, -1)
        scores = batched_dot(u, h)
        return F.softplus((2 * codes - 1) * scores) * steps, scores, u

    def hs_output_step(self, h: torch.Tensor, path: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                       lr: float) -> tuple[float, torch.Tensor | None]:
        """The hierarchical softmax's side: the inner nodes on the targets' paths (`path`: nodes, turns and
        mask, padded) move; (summed loss, dloss/dh), or (loss, None) when the loss is not finite. Padded
        steps have a gradient of 0: they add nothing to node 0, where they point."""
        points, codes, steps = path
        losses, scores, u = self.hs_losses(h, points, codes, steps)
        loss = losses.sum().item()
        if not math.isfinite(loss):
            return loss, None
        g = (torch.sigmoid(scores) - (1 - codes)) * steps  # (B, L): d loss / d score at each step
        grad_h = torch.bmm(g.unsqueeze(1), u).squeeze(1)  # (B, D): summed over each pair's path
        self.inner.weight.index_add_(0, points.reshape(-1), (g.unsqueeze(2) * h.unsqueeze(1)).reshape(-1, h.shape[1]),
                                     alpha=-lr)
        return loss, grad_h
