"""An Excel workbook (.xlsx) opened to be read a row at a time, its table of texts on disk.

openpyxl's read-only mode parses a sheet as it is read, but first loads the workbook's
shared strings (every distinct text of every sheet; a cell holds the index of its text)
into one list: for an order export of a million rows, hundreds of MB. Here that table is
parsed as it streams out of the zip into an anonymous temporary file (gone when closed, or
when the process dies), each text's end offset into a second one, and a cell's text is read
back by its index when the sheet names it (short ones, the texts most cells repeat, from a
small cache). Memory
stays flat in the size of the workbook; the disk holds about the table's own size.

The XML is parsed by openpyxl's ``iterparse`` (through defusedxml, as openpyxl does
everywhere) and each text taken as openpyxl's ``read_string_table`` takes it.
"""

import os
import struct
import tempfile
from collections.abc import Sequence
from typing import IO, Any, overload

from openpyxl.cell.text import Text
from openpyxl.reader.excel import ExcelReader
from openpyxl.xml.constants import SHARED_STRINGS, SHEET_MAIN_NS
from openpyxl.xml.functions import iterparse

_TEXT_TAG = f"{{{SHEET_MAIN_NS}}}si"
_END = struct.Struct("<Q")  # a text's end offset in the texts file
_BOUNDS = struct.Struct("<2Q")  # the end of the text before and of this one
CACHED_TEXTS = 4096  # short texts kept (statuses, currencies, SKUs: what cells repeat)
CACHED_LENGTH = 64  # characters; longer texts (names, addresses) are read again each time


class DiskStrings(Sequence[str]):
    """A workbook's shared strings, by index, kept in two temporary files."""

    def __init__(self, xml: IO[bytes]) -> None:
        self._texts = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        self._ends = tempfile.TemporaryFile()  # noqa: SIM115
        self._count = 0
        self._cache: dict[int, str] = {}
        try:
            self._parse(xml)
        except BaseException:
            self.close()
            raise

    def _parse(self, xml: IO[bytes]) -> None:
        root: Any = None
        end = 0
        for event, node in iterparse(xml, events=("start", "end")):
            if root is None:
                root = node  # <sst>: each text is dropped from it once read
            elif event == "end" and node.tag == _TEXT_TAG:
                parsed = Text.from_tree(node)
                text = "" if parsed is None else parsed.content.replace("x005F_", "")
                data = text.encode()
                self._texts.write(data)
                end += len(data)
                self._ends.write(_END.pack(end))
                self._count += 1
                root.clear()
        self._texts.flush()
        self._ends.flush()

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._count))]
        if not 0 <= index < self._count:  # a cell naming a text the table does not hold
            raise IndexError(f"the workbook has no shared text {index}")
        text = self._cache.get(index)
        if text is None:
            text = self._read(index)
            if len(text) <= CACHED_LENGTH:
                if len(self._cache) >= CACHED_TEXTS:
                    del self._cache[next(iter(self._cache))]  # the oldest
                self._cache[index] = text
        return text

    def _read(self, index: int) -> str:
        ends = self._ends.fileno()
        if index == 0:
            start, (end,) = 0, _END.unpack(os.pread(ends, _END.size, 0))
        else:
            start, end = _BOUNDS.unpack(os.pread(ends, _BOUNDS.size, (index - 1) * _END.size))
        return os.pread(self._texts.fileno(), end - start, start).decode()

    def close(self) -> None:
        self._texts.close()
        self._ends.close()


class _Reader(ExcelReader):
    """openpyxl's reader with the shared strings read into ``DiskStrings``."""

    def read_strings(self) -> None:
        found = self.package.find(SHARED_STRINGS)
        if found is not None:
            with self.archive.open(found.PartName[1:]) as xml:
                # openpyxl reads the table by index only, as it would a list
                self.shared_strings = DiskStrings(xml)  # type: ignore[assignment]


class Workbook:
    """A workbook ``open_workbook`` opened: its sheets, and ``close`` for it and its texts."""

    def __init__(self, book: Any, strings: Sequence[str]) -> None:
        self._book, self._strings = book, strings

    @property
    def worksheets(self) -> list[Any]:
        return list(self._book.worksheets)

    def close(self) -> None:
        self._book.close()
        if isinstance(self._strings, DiskStrings):
            self._strings.close()


def open_workbook(binary: IO[bytes]) -> Workbook:
    """The workbook in read-only mode, cells as their computed values rather than formulas
    (what ``openpyxl.load_workbook(binary, read_only=True, data_only=True)`` opens)."""
    reader = _Reader(binary, read_only=True, data_only=True)
    try:
        reader.read()
    except BaseException:
        reader.archive.close()
        if isinstance(reader.shared_strings, DiskStrings):
            reader.shared_strings.close()
        raise
    return Workbook(reader.wb, reader.shared_strings)
