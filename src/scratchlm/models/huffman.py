"""The Huffman tree of word2vec's hierarchical softmax (Mikolov et al. 2013b, sec. 2.1; Morin and Bengio 2005).

The hierarchical softmax puts the words at the leaves of a binary tree and a vector at each of its
V - 1 inner nodes. The probability of a word is the product, along the path from the root to its leaf,
of sigma(+-u_n . h) for each inner node n: + where the path turns one way, - the other. The two turns
of a node add to 1, so the V probabilities do too, and a word costs its path length, not V. A Huffman
tree of the counts (Huffman 1952) gives the frequent words the shortest paths, so an average step
costs about the entropy of the unigram distribution in bits.

The tree is built once from the counts with heapq, merging the two rarest nodes until one is left
(the word2vec tool's CreateBinaryTree, which gives the second-rarest of each pair the code 1), and each
word's path is written out as two rows padded to `MAX_CODE_LENGTH`: `points`, the inner nodes it
passes (0 .. V-2, the root being V-2), and `codes`, the turn taken at each (0 or 1).
"""

from __future__ import annotations

import heapq

import numpy as np

from scratchlm.errors import UserError

MAX_CODE_LENGTH = 40  # the word2vec tool's limit on a path's length


def huffman_tree(counts: np.ndarray, max_length: int = MAX_CODE_LENGTH) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes, points, lengths) for each id of `counts` (V,): codes (V, max_length) uint8 and points
    (V, max_length) int64 from the root down, padded with 0 past `lengths` (V,). Ids with count 0 are not
    in the tree (length 0); neither is anything when fewer than two ids have counts."""
    V = len(counts)
    words = np.flatnonzero(counts > 0)
    n = len(words)
    codes = np.zeros((V, max_length), dtype=np.uint8)
    points = np.zeros((V, max_length), dtype=np.int64)
    lengths = np.zeros(V, dtype=np.int64)
    if n < 2:
        return codes, points, lengths
    # nodes 0..n-1 are the leaves (words[i]), n..2n-2 the inner nodes in the order they are made
    parent = np.zeros(2 * n - 1, dtype=np.int64)
    turn = np.zeros(2 * n - 1, dtype=np.uint8)
    heap = [(int(c), i) for i, c in enumerate(counts[words])]
    heapq.heapify(heap)
    for inner in range(n, 2 * n - 1):
        (c1, a), (c2, b) = heapq.heappop(heap), heapq.heappop(heap)
        parent[a] = parent[b] = inner
        turn[b] = 1
        heapq.heappush(heap, (c1 + c2, inner))
    # walk every leaf up at once; a path is gathered leaf-first, then reversed to start at the root
    root = 2 * n - 2
    node = np.arange(n)
    up_codes, up_points = [], []
    depth = np.zeros(n, dtype=np.int64)
    while (live := node != root).any():
        up_codes.append(np.where(live, turn[node], 0))
        up_points.append(np.where(live, parent[node] - n, 0))
        depth += live
        node = np.where(live, parent[node], node)
    if depth.max() > max_length:
        raise UserError(f"the Huffman tree of this vocabulary is {depth.max()} deep, above the {max_length} a path "
                        "may take; raise --min-count or lower --vocab-size")
    up_codes, up_points = np.stack(up_codes, 1), np.stack(up_points, 1)  # (n, deepest), leaf first
    step = np.arange(up_codes.shape[1])
    from_root = np.clip(depth[:, None] - 1 - step, 0, None)  # column j from the root is column depth-1-j from the leaf
    inside = step < depth[:, None]
    codes[words, : up_codes.shape[1]] = np.where(inside, np.take_along_axis(up_codes, from_root, 1), 0)
    points[words, : up_points.shape[1]] = np.where(inside, np.take_along_axis(up_points, from_root, 1), 0)
    lengths[words] = depth
    return codes, points, lengths
