"""Delimited text files (CSV, and the tab-separated flat files marketplaces produce) and Excel
workbooks (.xlsx, as Walmart's Seller Center downloads its order export; the first sheet):
reading an uploaded file row by row without trusting it, and writing exports a spreadsheet
cannot be tricked by.

Reading is streamed: the bytes are decoded as they are read and the ``csv`` module hands over
one record at a time, so a file is never held in memory whole; a cell is at most
``csv.field_size_limit()`` characters (128 KiB), so neither is one huge row. A workbook's
sheet is parsed as it is read too (openpyxl's read-only mode), its table of distinct texts
kept on disk (common.workbook), so memory stays flat for files of millions of rows either way.

Rows are numbered as a spreadsheet shows them: the header is row 1, the first record row 2.
"""

import csv
import enum
import io
import itertools
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import PurePath
from typing import IO, Any

from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy import Engine, Row, Select

from common.db import snapshot_session
from common.workbook import PartTooLarge, TextTooLong, open_workbook


class Encoding(enum.StrEnum):
    """How the file's bytes are text: UTF-8 (with or without a byte order mark) or Latin-1."""

    UTF8 = "utf-8"
    LATIN1 = "latin-1"


class TableFormat(enum.StrEnum):
    """Comma-separated (``.csv``) or tab-separated (``.tsv``, ``.txt`` flat files)."""

    CSV = "csv"
    TSV = "tsv"


_CODECS = {Encoding.UTF8: "utf-8-sig", Encoding.LATIN1: "latin-1"}  # utf-8-sig: BOM optional
_DELIMITERS = {TableFormat.CSV: ",", TableFormat.TSV: "\t"}
_NAMES = {",": "a comma", "\t": "a tab", ";": "a semicolon", "|": "a vertical bar"}
# Characters no text cell may hold: a NUL or an escape sequence in a name is never meant.
_CONTROLS = frozenset(chr(c) for c in range(32)) - {"\t", "\n", "\r"} | {"\x7f"}
# A cell starting with one of these is run as a formula by Excel, LibreOffice and Sheets.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Refused at import in text fields; '-' starts ordinary text too (a list, a range), so it is
# only guarded on export.
IMPORT_FORMULA_STARTS = ("=", "+", "@")
VALUE_SHOWN = 200  # characters of a bad value quoted back in a report
# An .xlsx is a zip: a small upload may unpack to gigabytes (a "zip bomb"), so what it
# unpacks to is bounded, as declared in the zip (its reader stops at the declared sizes).
# openpyxl parses the XML through defusedxml.
WORKBOOK_MAX_UNPACKED = 2 * 2**30
# How a workbook's bytes begin: a zip (Excel .xlsx, read; OpenDocument .ods, refused) or an
# OLE compound file (Excel .xls, refused).
_WORKBOOK_STARTS = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")


class Problem(BaseModel):
    """One thing wrong with an imported file, in the API's error shape: a code, a sentence,
    and where: the row (1 is the header, None for the whole file), the column and the value."""

    error: str
    detail: str
    row: int | None = None
    column: str | None = None
    value: str | None = None


def problem(
    error: str, detail: str, *, row: int | None, column: str | None = None, value: Any = None
) -> Problem:
    shown = None if value is None else str(value)
    if shown is not None and len(shown) > VALUE_SHOWN:
        shown = shown[:VALUE_SHOWN] + "..."
    where = f"row {row}" if row is not None else "the file"
    if column is not None:
        where += f", column {column}"
    return Problem(error=error, detail=f"{where}: {detail}", row=row, column=column, value=shown)


class FileRefused(Exception):
    """The file as a whole cannot be read (encoding, header, empty): no row of it counts."""

    def __init__(self, refusal: Problem) -> None:
        super().__init__(refusal.detail)
        self.problem = refusal


def format_for(file_name: str | None, given: TableFormat | None) -> TableFormat:
    """The format asked for, else by the file name: ``.tsv`` and ``.txt`` are tab-separated."""
    if given is not None:
        return given
    suffix = PurePath(file_name or "").suffix.lower()
    return TableFormat.TSV if suffix in (".tsv", ".txt", ".tab") else TableFormat.CSV


@dataclass(frozen=True)
class Columns:
    """What an import reads: the columns it requires, those it also knows, and other names
    it takes for them (e.g. ``cost`` for ``cost_price``). Header names are matched trimmed
    and in any case."""

    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    aliases: Mapping[str, str] | None = None
    # A marketplace's report has many columns an import does not need: read past them.
    ignore_unknown: bool = False

    @property
    def known(self) -> tuple[str, ...]:
        return (*self.required, *self.optional)

    def canonical(self, name: str) -> str:
        cleaned = name.strip().lower().replace(" ", "_")
        return (self.aliases or {}).get(cleaned, cleaned)


@dataclass(frozen=True)
class Record:
    """One data row: its number and its cells by column name (only the file's columns)."""

    row: int
    cells: dict[str, str]


class TableReader:
    """Reads a binary stream as a delimited table (or an .xlsx workbook's first sheet),
    checking the header once, then yielding records; a file-wide problem (encoding, header,
    quoting, a workbook it cannot read) raises ``FileRefused``."""

    def __init__(
        self,
        binary: IO[bytes],
        *,
        columns: Columns,
        encoding: Encoding = Encoding.UTF8,
        table_format: TableFormat = TableFormat.CSV,
    ) -> None:
        self.columns = columns
        self.encoding = encoding
        self.delimiter = _DELIMITERS[table_format]
        self.workbook: Any = None  # an .xlsx file's, read sheet row by sheet row
        self._text: io.TextIOWrapper | None = None
        self._reader: Iterator[list[str]]
        start = binary.tell() if binary.seekable() else None
        buffered = io.BufferedReader(_Unclosable(binary), buffer_size=256 * 1024)
        if buffered.peek(8).startswith(_WORKBOOK_STARTS):
            self.workbook = _open_workbook(binary, start)
            self._reader = _sheet_rows(self.workbook.worksheets[0])
        else:
            self._text = io.TextIOWrapper(
                buffered,
                encoding=_CODECS[encoding],
                errors="strict",
                newline="",
            )
            self._reader = csv.reader(self._text, delimiter=self.delimiter, strict=True)
        self.header: list[str] = self._read_header()

    def _next(self, row: int) -> list[str] | None:
        try:
            return next(self._reader)
        except StopIteration:
            return None
        except UnicodeDecodeError as exc:
            hint = (
                " If it is Latin-1 (ISO-8859-1, as older spreadsheets save it), say "
                "encoding=latin-1."
                if self.encoding == Encoding.UTF8
                else ""
            )
            raise FileRefused(
                problem(
                    "undecodable_file",
                    f"the file is not {self.encoding.value} text (byte {exc.object[exc.start]:#04x}"
                    f" near row {row}).{hint}",
                    row=None,
                )
            ) from exc
        except csv.Error as exc:
            raise FileRefused(
                problem("malformed_file", f"cannot be read as CSV near row {row}: {exc}", row=None)
            ) from exc
        except TextTooLong as exc:
            raise FileRefused(_too_long(exc)) from exc
        except Exception as exc:  # a damaged sheet: bad XML, a cell naming no shared text, ...
            if self.workbook is None:
                raise
            raise FileRefused(
                problem(
                    "spreadsheet_file",
                    f"the workbook's sheet cannot be read near row {row} ({exc}); save it "
                    "again as .xlsx or as CSV and import that",
                    row=None,
                )
            ) from exc

    def _read_header(self) -> list[str]:
        raw = self._next(1)
        while raw is not None and not any(cell.strip() for cell in raw):
            raw = self._next(1)  # blank lines before the header
        if raw is None:
            raise FileRefused(problem("empty_file", "the file is empty (no header)", row=None))
        header = [self.columns.canonical(name) for name in raw]
        if len(header) == 1 and len(self.columns.known) > 1 and self.workbook is None:
            other = next((d for d in _NAMES if d != self.delimiter and d in raw[0]), None)
            if other is not None:
                raise FileRefused(
                    problem(
                        "wrong_delimiter",
                        f"the header is one column, {raw[0][:VALUE_SHOWN]!r}: its columns "
                        f"seem separated by {_NAMES[other]}, but this file is read as "
                        f"separated by {_NAMES[self.delimiter]} (format=csv for commas, "
                        "format=tsv for tabs)",
                        row=1,
                    )
                )
        duplicated = sorted(
            name
            for name, times in Counter(header).items()
            if times > 1 and (name in self.columns.known or not self.columns.ignore_unknown)
        )
        if duplicated:
            raise FileRefused(
                problem(
                    "duplicated_columns",
                    f"these columns appear more than once: {', '.join(duplicated)}",
                    row=1,
                    value=",".join(duplicated),
                )
            )
        unknown = [name for name in header if name not in self.columns.known]
        if unknown and not self.columns.ignore_unknown:
            raise FileRefused(
                problem(
                    "unknown_columns",
                    f"unknown columns {', '.join(unknown)}; the columns are "
                    f"{', '.join(self.columns.known)}",
                    row=1,
                    value=",".join(unknown),
                )
            )
        missing = [name for name in self.columns.required if name not in header]
        if missing:
            raise FileRefused(
                problem(
                    "missing_columns",
                    f"required columns missing: {', '.join(missing)}",
                    row=1,
                    value=",".join(missing),
                )
            )
        return header

    def records(self) -> Iterator[Record | Problem]:
        """The data rows in order; a row that cannot be matched to the header comes as the
        Problem with it instead (blank lines are skipped)."""
        width = len(self.header)
        for number in itertools.count(2):
            raw = self._next(number)
            if raw is None:
                return
            text = "".join(raw)  # one string to look through, not a call per cell
            if not text.strip():
                continue
            if self.workbook is not None and len(raw) < width:
                raw += [""] * (width - len(raw))  # a sheet's row ends at its last value
            if len(raw) != width:
                hint = (
                    "cells beyond the header's last column"
                    if self.workbook is not None
                    else f"a stray {_NAMES[self.delimiter][2:]} or an unclosed quote?"
                )
                yield problem(
                    "wrong_cell_count",
                    f"has {len(raw)} cells but the header has {width} columns ({hint})",
                    row=number,
                )
                continue
            cells = dict(zip(self.header, raw, strict=True))
            if self.columns.ignore_unknown:
                cells = {name: cells[name] for name in self.columns.known if name in cells}
            bad = None
            if not _CONTROLS.isdisjoint(text):  # in some cell, maybe of a column ignored
                bad = next(((n, c) for n, c in cells.items() if not _CONTROLS.isdisjoint(c)), None)
            if bad is not None:
                yield problem(
                    "control_character",
                    "holds a control character (only tab and newlines are allowed)",
                    row=number,
                    column=bad[0],
                    value=bad[1].encode("unicode_escape").decode("ascii"),
                )
                continue
            yield Record(row=number, cells=cells)

    def close(self) -> None:
        """Let go of the stream without closing the caller's file."""
        if self._text is not None:
            self._text.close()
        if self.workbook is not None:
            self.workbook.close()


def _open_workbook(binary: IO[bytes], start: int | None) -> Any:
    """An Excel workbook (.xlsx) opened to be read a row at a time (openpyxl's read-only
    mode: the sheet is parsed as it is read, never held whole); anything else that looks
    like a workbook (.xls, .ods, a damaged file) is refused with what to do instead."""
    refusal = problem(
        "spreadsheet_file",
        "the file is a spreadsheet workbook this import cannot read (.xls, .ods or a damaged "
        ".xlsx); save it as .xlsx or as CSV (in Excel: Save As, CSV UTF-8) and import that",
        row=None,
    )
    if start is None:
        raise FileRefused(refusal)
    binary.seek(start)
    try:
        with zipfile.ZipFile(binary) as archive:  # sizes as declared; reading stops at them
            unpacked = {info.filename: info.file_size for info in archive.infolist()}
    except (zipfile.BadZipFile, OSError) as exc:
        raise FileRefused(refusal) from exc
    size = sum(unpacked.values())
    if size > WORKBOOK_MAX_UNPACKED:
        raise FileRefused(
            problem(
                "workbook_too_large",
                f"the workbook unpacks to {size / 2**20:,.0f} MiB (at most "
                f"{WORKBOOK_MAX_UNPACKED / 2**20:,.0f}); save it as CSV, which is read as it "
                "streams",
                row=None,
            )
        )
    binary.seek(start)
    try:
        workbook = open_workbook(binary)
    except TextTooLong as exc:
        raise FileRefused(_too_long(exc)) from exc
    except PartTooLarge as exc:
        raise FileRefused(
            problem("workbook_too_large", f"{exc}: not a workbook Excel saved", row=None)
        ) from exc
    except Exception as exc:  # zipfile.BadZipFile, KeyError, InvalidFileException, ...
        raise FileRefused(refusal) from exc
    if not workbook.worksheets:
        workbook.close()
        raise FileRefused(refusal)
    return workbook


def _too_long(exc: TextTooLong) -> Problem:
    return problem("text_too_long", f"{exc}: not a workbook Excel saved", row=None)


def _sheet_rows(sheet: Any) -> Iterator[list[str]]:
    """The first sheet's rows as text cells, as a CSV export of it would give them (the
    cached result of a formula, never the formula)."""
    for values in sheet.iter_rows(values_only=True):
        cells = [_cell_text(value) for value in values]
        while cells and cells[-1] == "":
            cells.pop()
        yield cells


def _cell_text(value: object) -> str:
    """A cell's value as the text a CSV export writes: numbers to 15 significant digits as
    Excel shows them (12.99, not 12.990000000000002; 2, not 2.0), dates and times in ISO 8601
    without an offset (a sheet has none)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.15g}"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    return str(value)


class _Unclosable(io.RawIOBase):
    """The caller's stream as the TextIOWrapper sees it: closing the wrapper leaves it open
    (the caller may read it again, e.g. for the second pass of an import)."""

    def __init__(self, binary: IO[bytes]) -> None:
        self._binary = binary

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._binary.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def looks_like_formula(text: str) -> bool:
    """A text cell that a spreadsheet would run as a formula if it were written back."""
    return text.startswith(IMPORT_FORMULA_STARTS)


def unguard_formula(text: str) -> str | None:
    """The text of a cell an export guarded (``'=SUM(A1)`` -> ``=SUM(A1)``): its quote says
    it is text, so it imports as such and an export round-trips. None for any other cell."""
    if text.startswith("'") and text[1:].startswith(FORMULA_STARTS):
        return text[1:]
    return None


# --- writing ---------------------------------------------------------------------------


def guard_formula(text: str) -> str:
    """Prefix a quote to a cell a spreadsheet would run as a formula (OWASP's CSV injection
    advice): ``=cmd|' /C calc'!A0`` is written as ``'=cmd|' /C calc'!A0``."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell: times in ISO 8601 with their offset, money as a plain decimal,
    enums as their value, nothing as empty, and text guarded against formulas (numbers are
    written by us, so a negative quantity stays a number)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, str):
        return guard_formula(value)
    return value


def stream_rows(
    engine: Engine, stmt: Select[*tuple[Any, ...]], *, batch: int = 1000
) -> Iterator[Sequence[Row[Any]]]:
    """The rows of ``stmt`` in batches, read through a server-side cursor on its own
    connection, from one snapshot that holds up no writer (see snapshot_session).

    Only one batch is in memory at a time, however many rows match. The connection lives as
    long as the iteration (e.g. a streamed response).
    """
    with snapshot_session(engine) as session:
        result = session.execute(stmt.execution_options(stream_results=True, yield_per=batch))
        yield from result.partitions()


def csv_chunks(
    rows: Iterator[Sequence[Sequence[Any]]],
    header: Sequence[str],
    *,
    cells: Callable[[Sequence[Any]], Sequence[Any]] = lambda row: row,
) -> Iterator[str]:
    """The header, then one chunk of CSV per batch of rows, every cell through ``csv_cell``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for batch in rows:
        writer.writerows([csv_cell(value) for value in cells(row)] for row in batch)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def csv_download(chunks: Iterator[str], file_name: str) -> StreamingResponse:
    """Stream the chunks as a CSV attachment. The first chunk (the query run and its first
    batch read) is produced now, so a failure is an error answer rather than a 200 with a
    cut-off file."""
    first = next(chunks)
    return StreamingResponse(
        itertools.chain([first], chunks),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f"attachment; filename={file_name}"},
    )
