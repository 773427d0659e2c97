"""`loading.KeptData`: a batch's COPY data, kept in one buffer that later batches reuse
(`streaming.StreamingPairs.buffers`)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from target_postgres_hp.loading import KeptData
from target_postgres_hp.streaming import MAX_STREAMING_BATCHES, StreamingPairs

BATCHES = st.lists(st.lists(st.binary(max_size=3000), max_size=12), min_size=1, max_size=5)


@given(BATCHES)
def test_each_batch_gives_back_exactly_its_own_data(batches: list[list[bytes]]) -> None:
    """After `clear`, the blocks are the new batch's, in order, whatever a larger or smaller
    batch left in the buffer; blocks come back in copies of at most `BLOCK` bytes."""
    kept = KeptData()
    kept.BLOCK = 1000  # type: ignore[misc]
    for batch in batches:
        kept.clear()
        for block in batch:
            kept.append(memoryview(block) if len(block) % 2 else block)
        whole = b"".join(batch)
        assert len(kept) == len(whole)
        copies = list(kept.blocks())
        assert b"".join(copies) == whole
        assert all(0 < len(copy) <= 1000 for copy in copies)


def test_the_buffer_is_reused() -> None:
    kept = KeptData()
    kept.append(b"x" * 50_000)
    buffer = kept._buffer
    kept.clear()
    kept.append(b"y" * 20_000)
    assert kept._buffer is buffer
    assert len(buffer) == 50_000  # no shrink: the next batch writes into the same memory
    assert list(kept.blocks()) == [b"y" * 20_000]


def test_batches_take_free_buffers_and_never_keep_more_than_stream_at_once() -> None:
    """A batch takes the buffers a finished batch gave back (of any stream), so the memory
    is reused; no more are kept than batches can stream at once, so a run of many streams
    does not hold a buffer per stream."""
    pairs = StreamingPairs(lambda: None)  # type: ignore[arg-type, return-value]
    first = pairs.buffers()
    second = pairs.buffers()
    assert first is not second
    pairs.give_back(first)
    assert pairs.buffers() is first
    made = [pairs.buffers() for _ in range(MAX_STREAMING_BATCHES + 3)]
    for buffers in made:
        pairs.give_back(buffers)
    assert len(pairs._free_buffers) == MAX_STREAMING_BATCHES
    taken = {id(pairs.buffers()) for _ in range(MAX_STREAMING_BATCHES)}
    assert taken <= {id(buffers) for buffers in made}
    assert pairs.buffers() not in made  # the free ones are used up: new ones
