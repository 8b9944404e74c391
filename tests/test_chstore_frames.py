"""Compressed request bodies of the embedded store (sinks/chstore.py): every frame, not just the first."""
from __future__ import annotations

import gzip

import lz4.frame
import pytest
import zstandard

from pushpipe.sinks.chstore import QueryError, decompressed

BLOCKS = [bytes([n]) * 70_000 for n in range(3)]  # clickhouse-connect compresses each block of an insert apart


@pytest.mark.parametrize(("encoding", "compress"), [
    ("lz4", lz4.frame.compress),
    ("zstd", zstandard.ZstdCompressor().compress),
    ("gzip", gzip.compress),
])
def test_a_body_of_several_compressed_frames_is_read_whole(encoding: str, compress) -> None:
    assert decompressed(b"".join(compress(block) for block in BLOCKS), encoding) == b"".join(BLOCKS)


def test_a_truncated_frame_is_an_error_not_fewer_rows() -> None:
    whole = lz4.frame.compress(BLOCKS[0])
    with pytest.raises(QueryError, match="truncated"):
        decompressed(whole[:-10], "lz4")
