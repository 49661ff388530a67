"""Bulk imports of delimited files, whatever they hold: one streamed pass, a report in the
error shape, and all or nothing.

An import reads its file in batches of ``BATCH`` rows, checking each row on its own, then
each batch against the database with one lookup per batch. A dry run writes nothing: its
report says what a real run would do. A real run writes each batch as it checks it, in the
caller's transaction inside a savepoint, as long as no problem has been met; once one is,
it goes on checking (so the report lists every problem), and at the end it is refused (422
``import_rejected`` with the report) and the savepoint rolled back, so nothing was written.
The caller commits once, so a file lands whole or not at all. Orders that take stock are the
exception (see ``run_import``): they are checked whole first and written one by one.

What a file holds is an ``Importer``: the columns it reads, how it checks one row on its own,
and how it checks (and, when told, writes) a batch against the database.
"""

import hashlib
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Annotated, Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, Field, ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.progress import Progress as ProgressBar
from sqlalchemy.orm import Session

from common.delimited import (
    Columns,
    Encoding,
    FileRefused,
    Problem,
    Record,
    TableFormat,
    TableReader,
    format_for,
    problem,
)
from common.errors import Unprocessable

BATCH = 1000
T = TypeVar("T")
MAX_LISTED = 1000  # errors, and changes, listed in a report; the rest are counted


class ImportChange(BaseModel):
    """What a row creates or changes: for an update, each field before and after."""

    row: int
    action: Literal["create", "update"]
    key: Annotated[
        str,
        Field(description="The SKU, SKU@warehouse for a stock count, the order id for orders"),
    ]
    changes: dict[str, dict[str, Any]] = {}


class ImportReport(BaseModel):
    """What an import found and did. ``dry_run``: nothing was written, the counts say what a
    real run would do. ``applied``: a real run wrote the whole file (never a part of it)."""

    kind: Annotated[str, Field(examples=["products", "stock_counts", "orders"])]
    file_name: str | None
    dry_run: bool
    applied: bool
    ok: Annotated[bool, Field(description="No row or file problem; a real run writes it all")]
    rows_read: int
    rows_rejected: int
    created: Annotated[int, Field(description="Products or sales created (stock counts: 0)")]
    updated: Annotated[
        int, Field(description="Products changed, or stock levels corrected by a count")
    ]
    unchanged: Annotated[
        int,
        Field(description="Rows (orders: orders) already there as they are: nothing to write"),
    ]
    skipped: Annotated[int, Field(description="Orders left out on purpose (cancelled ones)")] = 0
    partial: Annotated[
        bool,
        Field(
            description="Orders that take stock land one by one: those in `changes` landed, "
            "those in `errors` did not"
        ),
    ] = False
    categories_created: Annotated[
        list[str], Field(description="Category paths created (or, in a dry run, to create)")
    ] = []
    notes: Annotated[
        list[str], Field(description="How the file was read, e.g. the zone of dates without one")
    ] = []
    errors: Annotated[
        list[Problem],
        Field(description=f"Each problem in the error shape, the first {MAX_LISTED}"),
    ]
    errors_not_listed: int = 0
    changes: Annotated[
        list[ImportChange], Field(description=f"What rows create or change, the first {MAX_LISTED}")
    ]
    changes_not_listed: int = 0


@dataclass(frozen=True)
class ImportFile:
    """How to read the file, and whether to write it."""

    file_name: str | None = None
    encoding: Encoding = Encoding.UTF8
    table_format: TableFormat | None = None  # None: by the file name (.tsv, .txt: tabs)
    dry_run: bool = False


class ImportRejected(Unprocessable):
    """A real run refused: the report says why, row by row; nothing was written."""

    code = "import_rejected"

    def __init__(self, detail: str, report: ImportReport) -> None:
        super().__init__(f"{detail}; nothing was written", report=report.model_dump(mode="json"))
        self.report = report


class Progress(Protocol):
    """Told, after each batch, which pass it is (``write``; ``check`` for a dry run, and
    before orders that take stock are written), the rows read in it so far and how far into
    the file (bytes; a little ahead, the reading is buffered): a CLI's progress bar."""

    def __call__(self, stage: str, rows: int, position: int) -> None: ...


class FirstRows:
    """The row each key of a file (a SKU, an order id) first appeared on, so that a file
    naming one twice is refused. Kept in a scratch SQLite file of the import's own, not in
    this process's memory: an import's memory stays one batch however long its file, and
    the shop's database (and the import's transaction, which may commit as it goes) is left
    alone. Keys are stored as 16-byte digests, so their length does not matter."""

    CHUNK = 500  # keys looked up per statement, under SQLite's bound-parameter limit

    def __init__(self) -> None:
        self._directory: tempfile.TemporaryDirectory[str] | None = None
        self._db: sqlite3.Connection | None = None

    def claim(self, keyed: Iterable[tuple[str, int]]) -> dict[int, int]:
        """Record each (key, row) whose key is new; answer, for each row whose key came
        before (earlier in the file, or in this batch), the row it first came on."""
        first: dict[bytes, int] = {}
        again: dict[int, bytes] = {}
        for key, row in keyed:
            digest = hashlib.blake2b(key.encode(), digest_size=16).digest()
            if digest in first:
                again[row] = digest
            else:
                first[digest] = row
        if not first:
            return {}
        db = self._open()
        keys = list(first)
        earlier: dict[bytes, int] = {}
        for start in range(0, len(keys), self.CHUNK):
            chosen = keys[start : start + self.CHUNK]
            marks = ",".join("?" * len(chosen))
            lookup = f"SELECT k, row_no FROM first_rows WHERE k IN ({marks})"  # noqa: S608 (only ?s)
            found = db.execute(lookup, chosen)
            earlier.update(found.fetchall())
        db.execute("BEGIN")  # one transaction for the batch's keys, not one per key
        db.executemany(
            "INSERT INTO first_rows (k, row_no) VALUES (?, ?)",
            [(k, row) for k, row in first.items() if k not in earlier],
        )
        db.execute("COMMIT")
        known = {**first, **earlier}
        repeated = {row: known[digest] for row, digest in again.items()}
        repeated.update({first[k]: row for k, row in earlier.items()})
        return repeated

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            self._directory = tempfile.TemporaryDirectory(prefix="import-keys-")
            # Scratch: nothing to keep across a crash, so no journal, no fsync, autocommit.
            self._db = sqlite3.connect(
                f"{self._directory.name}/keys.db", isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=OFF")
            self._db.execute("PRAGMA synchronous=OFF")
            self._db.execute(
                "CREATE TABLE first_rows (k BLOB PRIMARY KEY, row_no INTEGER) WITHOUT ROWID"
            )
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._directory is not None:
            self._directory.cleanup()
            self._directory = None


@dataclass
class Tally:
    """The report being built: counts, and the first MAX_LISTED errors and changes."""

    kind: str
    file: ImportFile
    first_rows: FirstRows
    rows_read: int = 0
    rows_rejected: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    partial: bool = False
    refused: bool = False
    categories_created: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[Problem] = field(default_factory=list)
    errors_not_listed: int = 0
    changes: list[ImportChange] = field(default_factory=list)
    changes_not_listed: int = 0

    @property
    def ok(self) -> bool:
        return not self.refused and self.rows_rejected == 0

    def refuse(self, reason: Problem) -> None:
        self.refused = True
        self._note(reason)

    def reject(self, problems: Iterable[Problem]) -> None:
        """One row is refused, for these reasons."""
        self.rows_rejected += 1
        for reason in problems:
            self._note(reason)

    def without_repeats(
        self,
        items: list[T],
        keyed: Callable[[T], tuple[str, int]],
        repeat: Callable[[T, int], Problem],
    ) -> list[T]:
        """The items whose key is new to the file. ``keyed`` gives an item's key and row;
        each item whose key came before is rejected with ``repeat(item, first_row)``."""
        rows = [keyed(item) for item in items]
        repeated = self.first_rows.claim(rows)
        kept = []
        for item, (_, row) in zip(items, rows, strict=True):
            if row in repeated:
                self.reject([repeat(item, repeated[row])])
            else:
                kept.append(item)
        return kept

    def _note(self, reason: Problem) -> None:
        if len(self.errors) < MAX_LISTED:
            self.errors.append(reason)
        else:
            self.errors_not_listed += 1

    def change(self, row: int, action: str, key: str, changes: Mapping[str, Any]) -> None:
        if action == "create":
            self.created += 1
        else:
            self.updated += 1
        if len(self.changes) < MAX_LISTED:
            self.changes.append(
                ImportChange.model_validate(
                    {"row": row, "action": action, "key": key, "changes": changes}
                )
            )
        else:
            self.changes_not_listed += 1

    def report(self, *, applied: bool) -> ImportReport:
        return ImportReport.model_validate(
            {
                "kind": self.kind,
                "file_name": self.file.file_name,
                "dry_run": self.file.dry_run,
                "applied": applied,
                "ok": self.ok,
                "rows_read": self.rows_read,
                "rows_rejected": self.rows_rejected,
                "created": self.created,
                "updated": self.updated,
                "unchanged": self.unchanged,
                "skipped": self.skipped,
                "partial": self.partial,
                "categories_created": self.categories_created,
                "notes": self.notes,
                # In row order (a batch's database checks come after its rows' own).
                "errors": sorted(self.errors, key=lambda e: e.row or 0),
                "errors_not_listed": self.errors_not_listed,
                "changes": self.changes,
                "changes_not_listed": self.changes_not_listed,
            }
        )


class Importer(Protocol):
    columns: Columns

    def check(self, record: Record) -> Any:
        """The row parsed on its own (no database), or a list of its problems."""

    def settle(self, rows: list[Any], *, write: bool) -> None:
        """Check a batch against the database and count it; write it if ``write``."""

    def finish(self, *, write: bool) -> None:
        """After the last batch: settle what was held back (e.g. an order whose lines may
        go on in the next batch)."""


Factory = Callable[[Tally], Importer]
"""Makes the importer of one pass, reporting to that pass's tally."""


def _read(
    binary: IO[bytes],
    kind: str,
    factory: Factory,
    file: ImportFile,
    *,
    write: bool,
    one_by_one: bool = False,
    progress: Progress | None,
) -> Tally:
    """One pass over the file; writes only while no problem has been met (one by one: on
    past a problem, each unit stands alone)."""
    tally = Tally(kind=kind, file=file, first_rows=FirstRows())
    try:
        return _pass(
            binary, tally, factory, file, write=write, one_by_one=one_by_one, progress=progress
        )
    finally:
        tally.first_rows.close()


def _pass(
    binary: IO[bytes],
    tally: Tally,
    factory: Factory,
    file: ImportFile,
    *,
    write: bool,
    one_by_one: bool,
    progress: Progress | None,
) -> Tally:
    importer = factory(tally)
    try:
        reader = TableReader(
            binary,
            columns=importer.columns,
            encoding=file.encoding,
            table_format=format_for(file.file_name, file.table_format),
        )
    except FileRefused as exc:
        tally.refuse(exc.problem)
        return tally
    try:
        batch: list[Any] = []
        for item in reader.records():
            tally.rows_read += 1
            parsed = item if isinstance(item, Problem) else importer.check(item)
            if isinstance(parsed, Problem):
                tally.reject([parsed])
            elif isinstance(parsed, list):
                tally.reject(parsed)
            else:
                batch.append(parsed)
            if len(batch) >= BATCH:
                importer.settle(batch, write=write and (tally.ok or one_by_one))
                batch = []
                if progress is not None:
                    progress("write" if write else "check", tally.rows_read, binary.tell())
        importer.settle(batch, write=write and (tally.ok or one_by_one))
        importer.finish(write=write and (tally.ok or one_by_one))
        if progress is not None:
            progress("write" if write else "check", tally.rows_read, binary.tell())
    except FileRefused as exc:
        tally.refuse(exc.problem)
    finally:
        reader.close()
    if tally.rows_read == 0 and tally.ok:
        tally.refuse(problem("empty_file", "the file has a header but no rows", row=None))
    return tally


def run_import(
    binary: IO[bytes],
    *,
    session: Session,
    kind: str,
    factory: Factory,
    file: ImportFile,
    one_by_one: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    """Check the file and (unless a dry run) write it in the same pass; raises
    ImportRejected, having written nothing, when any row or the file is refused. The caller
    commits.

    A real run writes each batch as it checks it, inside a savepoint, until it meets a
    problem; from there on it only checks, so the report lists every problem, and then the
    savepoint is rolled back. So each row is parsed, checked and looked up once.

    ``one_by_one``: the importer commits each unit it writes itself (an order that takes
    stock in products_service, across two services), so the whole file is checked first,
    writing nothing, and only a clean file is read again to write it: a unit refused while
    writing (e.g. short of stock) is reported and the others go on; the report is then
    ``partial``, its ``changes`` the units that landed and its ``errors`` those that did
    not."""
    if file.dry_run or one_by_one:
        checked = _read(binary, kind, factory, file, write=False, progress=progress)
        if file.dry_run:
            return checked.report(applied=False)
        _refuse_unless_ok(checked)
        if not (checked.created or checked.updated or checked.categories_created):
            return checked.report(applied=True)  # all there already: nothing to write
        binary.seek(0)
        applied = _read(
            binary,
            kind,
            factory,
            file,
            write=True,
            one_by_one=True,
            progress=progress,
        )
        applied.partial = not applied.ok
        return applied.report(applied=applied.ok)
    with session.begin_nested():  # rolled back by the ImportRejected raised inside it
        applied = _read(binary, kind, factory, file, write=True, progress=progress)
        _refuse_unless_ok(applied)
    return applied.report(applied=True)


def _refuse_unless_ok(tally: Tally) -> None:
    if not tally.ok:
        raise ImportRejected(
            f"{tally.rows_rejected} of {tally.rows_read} rows have problems"
            if not tally.refused
            else "The file cannot be read as it is",
            tally.report(applied=False),
        )


def validation_problems(
    exc: ValidationError, row: int, cells: Mapping[str, str], *, missing_reason: str
) -> list[Problem]:
    found = []
    for err in exc.errors():
        column = str(err["loc"][0]) if err["loc"] else None
        reason = missing_reason if err["type"] == "missing" else err["msg"]
        reason = reason.removeprefix("Value error, ")
        found.append(
            problem(
                "invalid_value" if err["type"] != "missing" else "missing_value",
                reason,
                row=row,
                column=column,
                value=cells.get(column or "") if err["type"] != "missing" else None,
            )
        )
    return found


# --- from a command line -------------------------------------------------------------------


def import_file(
    session: Session, path: Path, run: Callable[[IO[bytes], Progress | None], ImportReport]
) -> ImportReport:
    """Run an import of a local file (a CLI command): commit what it wrote, or answer the
    refused report with nothing written."""
    try:
        with path.open("rb") as binary, terminal_progress(path) as progress:
            report = run(binary, progress)
    except ImportRejected as exc:
        session.rollback()
        return exc.report
    session.commit()
    return report


@contextmanager
def terminal_progress(path: Path) -> Iterator[Progress | None]:
    """A progress bar on the terminal (rows, bytes, rate, time left), one per pass; None
    when stderr is not a terminal (a pipe or a log gets the summary only)."""
    if not sys.stderr.isatty():
        yield None
        return
    columns = (
        TextColumn("{task.description:<8}"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[rows]:>12,} rows"),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    size = path.stat().st_size
    with ProgressBar(*columns, console=Console(stderr=True), transient=False) as bar:
        tasks: dict[str, TaskID] = {}

        def update(stage: str, rows: int, position: int) -> None:
            if stage not in tasks:
                for earlier in tasks.values():
                    bar.update(earlier, completed=size)
                tasks[stage] = bar.add_task(stage, total=size, rows=0)
            bar.update(tasks[stage], completed=min(position, size), rows=rows)

        yield update


def summary(report: ImportReport) -> str:
    """The report in a few lines for a terminal: what was done, then each problem."""
    done = (
        "dry run"
        if report.dry_run
        else ("applied" if report.applied else "REFUSED, nothing written")
    )
    lines = [
        f"{report.kind} from {report.file_name}: {done}; rows read {report.rows_read}, "
        f"rejected {report.rows_rejected}; created {report.created}, updated "
        f"{report.updated}, unchanged {report.unchanged}"
    ]
    if report.skipped:
        lines.append(f"skipped on purpose (cancelled or pending orders): {report.skipped}")
    lines += report.notes
    if report.categories_created:
        lines.append(f"categories created: {', '.join(report.categories_created)}")
    lines += [f"  {problem.error}: {problem.detail}" for problem in report.errors]
    if report.errors_not_listed:
        lines.append(f"  ... and {report.errors_not_listed} more problems")
    return "\n".join(lines)
