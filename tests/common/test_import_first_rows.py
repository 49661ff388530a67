"""The keys an import has seen live in a scratch file, not in memory: repeats within a batch
and across batches name the row their key first came on, and the scratch file goes with
the import."""

import os

from common.imports import FirstRows


def test_a_key_seen_before_names_its_first_row_and_the_scratch_file_is_removed() -> None:
    seen = FirstRows()
    try:
        assert seen.claim([("a", 2), ("b", 3), ("a", 4)]) == {4: 2}
        assert seen.claim([("c", 1001), ("b", 1002), ("c", 1003), ("d", 1004)]) == {
            1002: 3,
            1003: 1001,
        }
        assert seen.claim([]) == {}
        assert seen.claim([("é" * 5000, 2001)]) == {}  # any length, any text
        assert seen.claim([("é" * 5000, 2002), ("e" * 5000, 2003)]) == {2002: 2001}
        directory = seen._directory
        assert directory is not None and os.path.isdir(directory.name)
    finally:
        seen.close()
    assert not os.path.exists(directory.name)
