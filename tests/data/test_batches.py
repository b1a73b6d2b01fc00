"""LMStream: every position once, targets one ahead, rows that continue from batch to batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchlm.data.batches import LMStream, WindowBatches, lm_batches, split_stream
from scratchlm.errors import UserError


def positions(n: int) -> np.ndarray:
    """A stream whose token at position p is p (uint16, as the token cache stores small vocabularies)."""
    return np.arange(n, dtype=np.uint16)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(2, 400), batch_size=st.integers(1, 12), bptt=st.integers(1, 24))
def test_every_position_once_targets_next_and_rows_continue(n: int, batch_size: int, bptt: int):
    ids = positions(n)
    L = (n - 1) // batch_size
    if L < 1:
        with pytest.raises(UserError):
            LMStream(ids, batch_size, bptt, drop_last=False)
        return
    stream = LMStream(ids, batch_size, bptt, drop_last=False)
    assert stream.row_length == L
    batches = list(stream.batches())
    assert len(batches) == -(-L // bptt)  # ceil: the last, shorter window is kept

    seen = torch.cat([x.reshape(-1) for x, _ in batches]).sort().values
    assert seen.tolist() == list(range(batch_size * L))  # each input position exactly once

    for k, (x, y) in enumerate(batches):
        assert x.dtype == y.dtype == torch.int64
        assert x.shape == y.shape == (batch_size, min(bptt, L - k * bptt))
        assert torch.equal(y, x + 1)  # the token at pos+1 (ids[p] == p here)
        if k + 1 < len(batches):
            next_x = batches[k + 1][0]
            assert torch.equal(next_x[:, 0], x[:, -1] + 1)  # row i of batch k+1 starts where row i of k ended
        assert torch.equal(x[:, 0], torch.arange(batch_size) * L + k * bptt)  # row i is stream slice i*L..


@settings(max_examples=200, deadline=None)
@given(n=st.integers(2, 400), batch_size=st.integers(1, 12), bptt=st.integers(1, 24))
def test_drop_last_keeps_only_full_windows(n: int, batch_size: int, bptt: int):
    ids = positions(n)
    L = (n - 1) // batch_size
    if bptt > L:
        with pytest.raises(UserError, match="too few"):
            LMStream(ids, batch_size, bptt, drop_last=True)
        return
    stream = LMStream(ids, batch_size, bptt, drop_last=True)
    assert len(stream) == L // bptt
    for x, y in stream.batches():
        assert x.shape == y.shape == (batch_size, bptt)
        assert torch.equal(y, x + 1)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(2, 600), per=st.integers(1, 5), world=st.integers(1, 4), bptt=st.integers(1, 12),
       drop_last=st.booleans())
def test_shards_together_are_the_whole_batch(n: int, per: int, world: int, bptt: int, drop_last: bool):
    batch_size = per * world
    try:
        whole = LMStream(positions(n), batch_size, bptt, drop_last)
    except UserError:
        return
    shards = [whole.shard(rank, world) for rank in range(world)]
    assert all(len(s) == len(whole) for s in shards)
    for k in range(len(whole)):
        x, y = whole.batch(k)
        parts = [s.batch(k) for s in shards]
        assert torch.equal(torch.cat([p[0] for p in parts]), x)
        assert torch.equal(torch.cat([p[1] for p in parts]), y)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(2, 400), batch_size=st.integers(1, 12), bptt=st.integers(1, 24), drop_last=st.booleans())
def test_window_batches_are_consecutive_windows_in_order(n: int, batch_size: int, bptt: int, drop_last: bool):
    windows = (n - 1) // bptt
    kept = windows if not drop_last else windows - windows % batch_size
    if kept == 0:
        with pytest.raises(UserError, match="too few"):
            WindowBatches(positions(n), batch_size, bptt, drop_last)
        return
    batches = list(WindowBatches(positions(n), batch_size, bptt, drop_last).batches())
    x = torch.cat([x for x, _ in batches])
    y = torch.cat([y for _, y in batches])
    assert x.shape == y.shape == (kept, bptt)  # every window once, a last short batch only without drop_last
    assert torch.equal(x.reshape(-1), torch.arange(kept * bptt))  # in stream order, not overlapping
    assert torch.equal(y, x + 1)
    assert all(b.size(0) == batch_size for b, _ in batches[:-1])


@settings(max_examples=100, deadline=None)
@given(n=st.integers(2, 600), per=st.integers(1, 5), world=st.integers(1, 4), bptt=st.integers(1, 12))
def test_window_shards_are_disjoint_whole_windows(n: int, per: int, world: int, bptt: int):
    try:
        whole = WindowBatches(positions(n), per * world, bptt)
        shards = [whole.shard(rank, world) for rank in range(world)]
    except UserError:
        return
    starts = [int(x[:, 0].min()) for s in shards for x, _ in s.batches()]
    seen = torch.cat([x.reshape(-1) for s in shards for x, _ in s.batches()])
    assert len(set(seen.tolist())) == len(seen)  # no window read twice across processes
    assert all(start % bptt == 0 for start in starts)  # every window at the phase of the whole
    for s in shards:
        for x, y in s.batches():
            assert torch.equal(y, x + 1) and x.shape == (per, bptt)


@settings(max_examples=100, deadline=None)
@given(n=st.integers(2, 600), per=st.integers(1, 5), world=st.integers(1, 4), bptt=st.integers(1, 12))
def test_window_shards_together_are_the_whole_batch(n: int, per: int, world: int, bptt: int):
    """Rank r reads rows r*B/N.. of every batch: N processes see exactly the batches of one."""
    try:
        whole = WindowBatches(positions(n), per * world, bptt)
    except UserError:
        return
    shards = [whole.shard(rank, world) for rank in range(world)]
    assert all(len(s) == len(whole) for s in shards)
    for k in range(len(whole)):
        for got, want in zip(zip(*(s.batch(k) for s in shards), strict=True), whole.batch(k), strict=True):
            assert torch.equal(torch.cat(got), want)


@pytest.mark.parametrize("layout", [LMStream, WindowBatches])
def test_uneven_shares_for_evaluation_cover_the_batch_once(layout):
    """Evaluation sums over processes, so 5 rows over 3 processes (or 2 over 3, one empty) is fine."""
    for batch_size in (5, 2):
        whole = layout(positions(400), batch_size, 4)
        shards = [whole.shard(rank, 3, even=False) for rank in range(3)]
        for k in range(len(whole)):
            assert torch.equal(torch.cat([s.batch(k)[1] for s in shards]), whole.batch(k)[1])


def test_lm_batches_picks_the_layout_by_whether_the_model_carries_state():
    ids = positions(1000)
    assert isinstance(lm_batches(ids, 8, 4, carries_state=True), LMStream)
    assert isinstance(lm_batches(ids, 8, 4, carries_state=False), WindowBatches)
    with pytest.raises(UserError):
        lm_batches(positions(20), 8, 4, carries_state=True)
    small = lm_batches(positions(20), 8, 4, carries_state=True, shrink=True)  # a short validation split
    assert small.batch_size == 4 and len(small) >= 1


def test_shard_refuses_an_uneven_split():
    with pytest.raises(UserError, match="multiple"):
        LMStream(positions(100), 6, 4).shard(0, 4)


def test_batches_resume_from_a_batch_index():
    stream = LMStream(positions(200), 4, 5)
    assert [x.tolist() for x, _ in stream.batches(3)] == [stream.batch(k)[0].tolist() for k in range(3, len(stream))]


@pytest.mark.parametrize("batch_size, bptt", [(0, 3), (3, 0)])
def test_sizes_must_be_positive(batch_size: int, bptt: int):
    with pytest.raises(UserError, match="at least 1"):
        LMStream(positions(100), batch_size, bptt)


def test_split_stream_keeps_order():
    train, valid = split_stream(positions(10), 0.2)
    assert train.tolist() == list(range(9))  # the last training target ...
    assert valid.tolist() == [8, 9]  # ... is the first validation input: no token is lost between them
    for bad in (0, 1, -0.5, 1.5):
        with pytest.raises(UserError):
            split_stream(positions(10), bad)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(20, 500), fraction=st.floats(0.05, 0.5), align=st.integers(1, 16))
def test_split_stream_cuts_at_a_multiple_of_the_window(n: int, fraction: float, align: int):
    train, valid = split_stream(positions(n), fraction, align)
    cut = int(valid[0])
    assert cut % align == 0
    assert train.tolist() == list(range(cut + 1)) and valid.tolist() == list(range(cut, n))


@given(n=st.integers(200, 3000), batch_size=st.integers(1, 6), bptt=st.integers(5, 40), epoch=st.integers(0, 5))
@settings(max_examples=40, deadline=None)
def test_random_bptt_windows_tile_each_row_and_repeat_per_epoch(n, batch_size, bptt, epoch):
    ids = np.arange(n, dtype=np.int64)
    try:
        stream = LMStream(ids, batch_size, bptt)
    except UserError:
        return
    cut = stream.for_epoch(epoch, seed=3)
    assert cut.starts == stream.for_epoch(epoch, seed=3).starts  # a resumed run cuts the epoch the same way
    assert cut.starts[0] == 0 and cut.starts[-1] == stream.row_length
    lengths = np.diff(cut.starts)
    assert (lengths[:-1] >= 5).all() and (lengths <= bptt + 20).all() and (lengths > 0).all()
    seen = np.concatenate([cut.batch(k)[0] for k in range(len(cut))], axis=1)  # (B, L): every position once
    assert np.array_equal(seen, ids[: batch_size * stream.row_length].reshape(batch_size, -1))


@given(n=st.integers(50, 3000), batch_size=st.integers(1, 6), bptt=st.integers(1, 40), epoch=st.integers(0, 5))
@settings(max_examples=60, deadline=None)
def test_shuffled_windows_are_whole_disjoint_windows_drawn_per_epoch(n, batch_size, bptt, epoch):
    ids = np.arange(n, dtype=np.int64)
    try:
        windows = WindowBatches(ids, batch_size, bptt)
        shuffled = windows.for_epoch(epoch, seed=3)
    except UserError:
        return
    again = windows.for_epoch(epoch, seed=3)
    assert (again.offset, again.order) == (shuffled.offset, shuffled.order)  # a resumed run reads the epoch alike
    assert 0 <= shuffled.offset < bptt and shuffled.windows == (n - bptt) // bptt
    x = torch.cat([shuffled.batch(k)[0] for k in range(len(shuffled))])  # (windows read, T)
    y = torch.cat([shuffled.batch(k)[1] for k in range(len(shuffled))])
    assert torch.equal(y, x + 1) and torch.equal(x[:, 1:], x[:, :-1] + 1)  # whole windows, targets one ahead
    assert ((x[:, 0] - shuffled.offset) % bptt == 0).all() and int(y.max()) < n  # on the grid, inside the stream
    assert len(set(x[:, 0].tolist())) == len(x) == len(shuffled) * batch_size  # each window at most once


def test_shuffled_epochs_differ_and_shards_still_cover_the_batch():
    windows = WindowBatches(np.arange(10_000, dtype=np.int64), 8, 16)
    first, second = windows.for_epoch(0, seed=0), windows.for_epoch(1, seed=0)
    assert first.order != second.order and first.order != tuple(sorted(first.order))
    halves = [first.shard(rank, 2).batch(5)[0] for rank in range(2)]
    assert torch.equal(torch.cat(halves), first.batch(5)[0])
