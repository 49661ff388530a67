"""An Excel workbook (.xlsx) opened to be read a row at a time, its table of texts on disk.

openpyxl's read-only mode parses a sheet as it is read, but first loads the workbook's
shared strings (every distinct text of every sheet; a cell holds the index of its text)
into one list: for an order export of a million rows, hundreds of MB. Here that table is
parsed as it streams out of the zip into an anonymous temporary file (gone when closed, or
when the process dies), each text's end offset into a second one, and a cell's text is read
back by its index when the sheet names it (short ones, the texts most cells repeat, from a
small cache). Memory stays flat in the size of the workbook; the disk holds about the
table's own size.

The table is parsed by defusedxml's SAX parser (no entity declarations, no external
references: XML bombs), a text at a time, each taken as openpyxl's ``read_string_table``
takes it (its plain text and the text of its formatted runs, not its phonetic guide). A
text longer than a cell can hold (``MAX_TEXT``) is refused as it is read, so one huge text
cannot fill the memory either.
"""

import os
import struct
import tempfile
from collections.abc import Callable, Sequence
from typing import IO, Any, overload
from xml.sax.handler import ContentHandler, feature_namespaces

from defusedxml.sax import make_parser
from openpyxl.reader.excel import ExcelReader
from openpyxl.xml.constants import SHARED_STRINGS

_END = struct.Struct("<Q")  # a text's end offset in the texts file
_BOUNDS = struct.Struct("<2Q")  # the end of the text before and of this one
CACHED_TEXTS = 4096  # short texts kept (statuses, currencies, SKUs: what cells repeat)
CACHED_LENGTH = 64  # characters; longer texts (names, addresses) are read again each time
MAX_TEXT = 32_767  # characters: the most an Excel cell holds


class TextTooLong(Exception):
    """A text of the workbook is longer than any cell can hold."""


class PartTooLarge(Exception):
    """A part of the workbook openpyxl reads whole is larger than any real one."""


class DiskStrings(Sequence[str]):
    """A workbook's shared strings, by index, kept in two temporary files."""

    def __init__(self, xml: IO[bytes]) -> None:
        self._texts = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        self._ends = tempfile.TemporaryFile()  # noqa: SIM115
        self._count = 0
        self._cache: dict[int, str] = {}
        try:
            parser = make_parser()
            parser.setFeature(feature_namespaces, True)
            parser.setContentHandler(_Table(self._add))
            parser.parse(xml)
            self._texts.flush()
            self._ends.flush()
        except BaseException:
            self.close()
            raise

    def _add(self, text: str) -> None:
        data = text.encode()
        self._texts.write(data)
        self._ends.write(_END.pack(self._texts.tell()))
        self._count += 1

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


class _Table(ContentHandler):
    """The texts of ``<sst><si>...</si>...</sst>``, each handed to ``add`` once read: an
    item's ``<t>``, or the ``<t>`` of each of its runs (``<r>``), joined."""

    def __init__(self, add: Callable[[str], None]) -> None:
        super().__init__()
        self.add = add
        self.path: list[str] = []  # local names from <sst> down
        self.parts: list[str] = []
        self.length = 0
        self.taking = False
        self.read = 0  # texts read so far

    def startElementNS(self, name: tuple[str | None, str], qname: Any, attrs: Any) -> None:
        path = self.path
        path.append(name[1])
        self.taking = name[1] == "t" and (path[-2:-1] == ["si"] or (path[-3:-1] == ["si", "r"]))

    def characters(self, content: str) -> None:
        if self.taking:
            self.length += len(content)
            if self.length > MAX_TEXT:
                raise TextTooLong(
                    f"text {self.read + 1} of the workbook is longer than the "
                    f"{MAX_TEXT:,} characters a cell holds"
                )
            self.parts.append(content)

    def endElementNS(self, name: tuple[str | None, str], qname: Any) -> None:
        self.path.pop()
        self.taking = False
        if name[1] == "si" and len(self.path) == 1:
            self.add("".join(self.parts).replace("x005F_", ""))
            self.parts.clear()
            self.length = 0
            self.read += 1


# The XML streamed out of the zip (the sheets, the table of texts) may hold no run of bytes
# without a "<" longer than a cell's text can take, written as character references of up
# to 10 bytes each: a text is never built bigger than that, whatever the file declares.
MAX_RUN = 10 * MAX_TEXT
MAX_PART = 64 * 2**20  # bytes of a part read whole (styles, theme: a few MB at most)


class _RunBound:
    """A part of the zip as openpyxl's parsers read it, refusing a text too long to be a
    cell's before the parser has gathered it (runs between two "<", counted across reads)."""

    def __init__(self, raw: IO[bytes], name: str) -> None:
        self._raw, self._name = raw, name
        self._run = 0  # bytes since the last "<"

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        last = data.rfind(b"<")
        if last < 0:
            self._run += len(data)
        else:
            longest = data.find(b"<") + self._run
            if len(data) > MAX_RUN:  # a big read: the runs inside it count too
                longest = max(longest, *map(len, data[:last].split(b"<")))
            self._check(longest)
            self._run = len(data) - last - 1
        self._check(self._run)
        return data

    def _check(self, run: int) -> None:
        if run > MAX_RUN:
            raise TextTooLong(
                f"{self._name} holds a text longer than the {MAX_TEXT:,} characters a cell holds"
            )

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> "_RunBound":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _BoundedArchive:
    """The workbook's zip, each part opened as a stream read through ``_RunBound``, and the
    parts openpyxl reads whole (the workbook's list of sheets, its styles, its theme, their
    relations) refused past ``MAX_PART`` as the zip declares them (its reader stops there)."""

    def __init__(self, archive: Any) -> None:
        self._archive = archive

    def read(self, name: Any, *args: Any, **kwargs: Any) -> bytes:
        size = self._archive.getinfo(name).file_size
        if size > MAX_PART:
            raise PartTooLarge(
                f"the workbook's part {name} unpacks to {size:,} bytes (at most {MAX_PART:,})"
            )
        return bytes(self._archive.read(name, *args, **kwargs))

    def open(self, name: Any, *args: Any, **kwargs: Any) -> _RunBound:
        part = name if isinstance(name, str) else name.filename
        return _RunBound(self._archive.open(name, *args, **kwargs), part)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._archive, name)


class _Reader(ExcelReader):
    """openpyxl's reader with the shared strings read into ``DiskStrings`` and every part
    streamed out of the zip bounded (``_RunBound``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.archive = _BoundedArchive(self.archive)  # type: ignore[assignment]

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
