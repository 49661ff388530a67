"""Imports in the background: an upload with ``background=true`` is answered at once (202)
with a job, which runs the same import on a thread of the process that took it. Its status
route shows the progress (rows read, how far into the file, rate, time left) and, once it
ended, the report; a cancel request stops it at its next batch, and nothing is written.

The job's row is the only state shared between replicas: the runner writes its progress
there in short transactions of its own (never the import's, which commits once at the end),
and reads the cancel request back at the same moment, so any replica answers the status and
takes the cancel. The runner also beats (the row's ``updated_at``) a few times per
``import_stalled_seconds`` (5 minutes), however long a batch or the final commit takes, so
a job whose process died (a restart, a crash) is one whose row no longer moves: ``stalled``
once it has not moved for that long. Every process of its service then settles it
(``reap``, run at start-up and every ``import_reap_seconds``): the one that still has its
spooled upload starts it again from the beginning (nothing of the dead run was written: its
transaction died with its connection), at most ``MAX_ATTEMPTS`` times in all; otherwise the
job ends ``failed`` saying so. Each start holds the job under a token of its own, so a
runner taken for dead that was only stuck stops at its next report and writes nothing over
its successor. A job that has not ended keeps its spooled upload (a dead runner's waits for
the process that starts it again); other uploads left on disk are removed once as old as
that.

With orders that take stock (which land one by one), orders recorded before a cancel or a
crash stay; the run started again skips them (an order is imported once per channel).
"""

import asyncio
import contextlib
import contextvars
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import IO, Annotated, Any, Generic, Protocol, TypeVar

from fastapi import APIRouter, FastAPI, Query, Request, UploadFile, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from common.auth.dependencies import CurrentUser, ManagerUser
from common.db import SessionDep, utcnow
from common.errors import NotFound, error_responses
from common.imports import ImportRejected, ImportReport, Progress
from common.models import ImportJob, ImportJobStatus
from common.pagination import Page, PageDep, paginate
from common.settings import CommonSettings

logger = logging.getLogger(__name__)
SPOOL_CHUNK = 1 << 20
# A runner writes its progress after every batch; this long without it, it is gone (the
# default of the import_stalled_seconds setting).
STALLED_AFTER_SECONDS = 300
SPOOL_PREFIX = "import-"
MAX_ATTEMPTS = 3  # starts of one job in all: a file that kills its process every time stops
DIED = (
    "Its process stopped (a restart or a crash) before the import finished, and no process "
    "of the service still had its upload to start it again; nothing of it was written "
    "(orders that take stock: those recorded before stay, and importing the file again skips "
    "them). Upload the file again."
)
GAVE_UP = (
    f"Its process stopped {MAX_ATTEMPTS} times while running it (a restart or a crash each "
    "time), so it was not started again; nothing of it was written (orders that take stock: "
    "those recorded before stay). Check the service's logs, then upload the file again."
)
RunImport = Callable[[Session, IO[bytes], Progress | None], ImportReport]
"""Runs the import in the session given (not committing it), reporting its progress."""


class ImportCancelled(Exception):
    """A cancel was requested (or the job is no longer this runner's): the job stops and its
    transaction is rolled back."""


OptionsT = TypeVar("OptionsT", bound="JobOptions")


@dataclass(frozen=True)
class JobKind(Generic[OptionsT]):
    """One kind of import a service runs as a job: the type of its options (kept with the
    job as JSON, read back to start it again) and how to run it with them."""

    options: type[OptionsT]
    run: Callable[[FastAPI, OptionsT], RunImport]

    @cached_property
    def _adapter(self) -> TypeAdapter[OptionsT]:
        return TypeAdapter(self.options)

    def dump(self, options: OptionsT) -> dict[str, Any]:
        stored: dict[str, Any] = self._adapter.dump_python(options, mode="json")
        return stored

    def load(self, stored: Mapping[str, Any]) -> OptionsT:
        return self._adapter.validate_python(stored)


JobKinds = Mapping[str, JobKind[Any]]
"""A service's job kinds by name (``app.state.import_job_kinds``)."""


class ImportJobRead(BaseModel):
    """A background import: where it stands and, once it ended, its report."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    file_name: str | None
    dry_run: bool
    status: ImportJobStatus
    attempts: Annotated[
        int,
        Field(
            description="How many times it was started: a job whose process died is started "
            f"again from its upload, {MAX_ATTEMPTS} times at most"
        ),
    ]
    stage: Annotated[
        str,
        Field(
            description="write (a real run checks and writes in one pass), or check (a dry "
            "run; orders that take stock are checked, then written)"
        ),
    ]
    rows_read: Annotated[int, Field(description="Rows read so far in this stage")]
    bytes_read: int
    bytes_total: int
    percent: Annotated[float | None, Field(description="How far into the file this stage is")]
    rows_per_second: float | None
    eta_seconds: Annotated[
        float | None, Field(description="Time left in this stage, at its pace so far")
    ]
    cancel_requested: bool
    stalled: Annotated[
        bool,
        Field(
            description="Running, but its progress has not moved for "
            f"{STALLED_AFTER_SECONDS // 60} minutes (SHOP_IMPORT_STALLED_SECONDS): its "
            "process most likely died (nothing of it was written); within a minute it is "
            "started again, or ends failed saying why"
        ),
    ]
    report: ImportReport | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    updated_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, job: ImportJob, stalled_after: float = STALLED_AFTER_SECONDS) -> "ImportJobRead":
        percent = rate = eta = None
        if job.started_at is not None and job.bytes_total:
            percent = round(100 * min(job.bytes_read, job.bytes_total) / job.bytes_total, 1)
            elapsed = max((job.updated_at - job.started_at).total_seconds(), 1e-3)
            rate = round(job.rows_read / elapsed, 1)
            if job.finished_at is None and job.bytes_read:
                left = max(job.bytes_total - job.bytes_read, 0)
                eta = round(left / (job.bytes_read / elapsed), 1)
        computed = {
            "percent": percent,
            "rows_per_second": rate,
            "eta_seconds": eta,
            "stalled": job.finished_at is None
            and (utcnow() - job.updated_at).total_seconds() > stalled_after,
        }
        fields = {name: getattr(job, name) for name in cls.model_fields if name not in computed}
        return cls.model_validate({**fields, **computed})


def spool_directory(settings: CommonSettings) -> Path:
    """Where a service spools the uploads of its jobs."""
    return settings.state_dir / "imports"


def spool(upload: UploadFile, directory: Path) -> Path:
    """Copy the upload to a file of the job's own (the request's copy goes with the request)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{SPOOL_PREFIX}{uuid.uuid4().hex}"
    upload.file.seek(0)
    with path.open("wb") as out:
        shutil.copyfileobj(upload.file, out, SPOOL_CHUNK)
    return path


def start(*, app: FastAPI, service: str, kind: str, options: "JobOptions", path: Path) -> ImportJob:
    """Record the job (with what it takes to start it again) and start it on a thread of
    its own; answer the job as recorded."""
    job_kind = kinds_of(app)[kind]
    sessions: sessionmaker[Session] = app.state.sessionmaker
    token = uuid.uuid4().hex
    with sessions() as session:
        job = ImportJob(
            service=service,
            kind=kind,
            file_name=options.file_name,
            dry_run=options.dry_run,
            status=ImportJobStatus.QUEUED,
            bytes_total=path.stat().st_size,
            created_by_id=options.actor_id,
            options=job_kind.dump(options),
            spool_name=path.name,
            attempts=1,
            runner=token,
        )
        session.add(job)
        session.commit()
    stalled_after = app.state.settings.import_stalled_seconds
    _launch(sessions, job.id, token, path, job_kind.run(app, options), stalled_after)
    return job


def kinds_of(app: FastAPI) -> JobKinds:
    kinds: JobKinds = app.state.import_job_kinds
    return kinds


def _launch(
    sessions: sessionmaker[Session],
    job_id: int,
    token: str,
    path: Path,
    run: RunImport,
    stalled_after: float,
) -> None:
    # In the starting request's context (its request id goes on in the job's logs and calls).
    context = contextvars.copy_context()
    threading.Thread(
        target=context.run,
        args=(_run, sessions, job_id, token, path, run, stalled_after / 5),
        name=f"import-job-{job_id}",
        daemon=True,
    ).start()


def _set(sessions: sessionmaker[Session], job_id: int, token: str, **values: Any) -> bool:
    """Update the job, if it is still this runner's and has not ended, in a transaction of
    its own; answer whether to stop: a cancel was requested, the job was ended meanwhile, or
    another process started it again (``reap`` took this runner for dead)."""
    with sessions() as session:
        _update_running(session, job_id, [ImportJob.runner == token], values)
        cancel, finished, runner = session.execute(
            select(ImportJob.cancel_requested, ImportJob.finished_at, ImportJob.runner).where(
                ImportJob.id == job_id
            )
        ).one()
        session.commit()
    return bool(cancel) or finished is not None or runner != token


def _mark(sessions: sessionmaker[Session], job_id: int, token: str, **values: Any) -> bool:
    """Update the job, if it is still this runner's and has not ended, in a transaction of
    its own; answer whether it was."""
    with sessions() as session:
        made = _update_running(session, job_id, [ImportJob.runner == token], values)
        session.commit()
    return made == 1


def _update_running(
    session: Session, job_id: int, held: list[Any], values: Mapping[str, Any]
) -> int:
    """Update the job if it has not ended and still stands as ``held`` says; answer 1 if
    it did, else 0."""
    where = [ImportJob.id == job_id, ImportJob.finished_at.is_(None), *held]
    found: int = (
        session.connection().execute(update(ImportJob).where(*where).values(**values)).rowcount
    )
    return found


def _beat(
    sessions: sessionmaker[Session], job_id: int, token: str, every: float, done: threading.Event
) -> None:
    """Say that the runner lives (the job's ``updated_at``) every ``every`` seconds until
    it is ``done``, so that a long batch or the long commit at the end of a big file is not
    taken for a dead process; stop once the job is not the runner's any more."""
    while not done.wait(every):
        try:
            if not _mark(sessions, job_id, token, updated_at=utcnow()):
                return
        except Exception:  # the database away a moment: the next beat tries again
            logger.exception("import job %s: its heartbeat failed", job_id)


def _run(
    sessions: sessionmaker[Session],
    job_id: int,
    token: str,
    path: Path,
    run: RunImport,
    beat_every: float,
) -> None:
    last = 0.0
    ended = False
    done = threading.Event()
    threading.Thread(
        target=_beat,
        args=(sessions, job_id, token, beat_every, done),
        name=f"import-job-{job_id}-beat",
        daemon=True,
    ).start()

    def progress(stage: str, rows: int, position: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < 0.2 and stage != "done":  # a row per batch at most 5 times a second
            return
        last = now
        if _set(sessions, job_id, token, stage=stage, rows_read=rows, bytes_read=position):
            raise ImportCancelled

    def end(state: ImportJobStatus, **values: Any) -> None:
        nonlocal ended
        ended = _end(sessions, job_id, token, state, **values)

    try:
        if _set(sessions, job_id, token, status=ImportJobStatus.RUNNING, started_at=utcnow()):
            raise ImportCancelled
        with sessions() as session, path.open("rb") as binary:
            try:
                report = run(session, binary, progress)
                session.commit()
            except BaseException:
                session.rollback()
                raise
        # (the whole file was read, whatever the last progress report said)
        end(ImportJobStatus.SUCCEEDED, report=report, read_all=True)
    except ImportRejected as exc:
        end(ImportJobStatus.REJECTED, report=exc.report)
    except ImportCancelled:
        end(ImportJobStatus.CANCELLED)
    except Exception as exc:
        logger.exception("import job %s failed", job_id)
        end(ImportJobStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:500])
    finally:
        done.set()
        if ended:  # else the job went on elsewhere, from this file: it is not ours to remove
            path.unlink(missing_ok=True)


def _end(
    sessions: sessionmaker[Session],
    job_id: int,
    token: str,
    state: ImportJobStatus,
    *,
    report: ImportReport | None = None,
    error: str | None = None,
    read_all: bool = False,
) -> bool:
    """End the job if it is still this runner's; answer whether it was."""
    return _mark(
        sessions,
        job_id,
        token,
        **({"bytes_read": ImportJob.bytes_total} if read_all else {}),
        # (the last progress report may have been held back: at most five a second)
        **({"rows_read": report.rows_read} if report is not None else {}),
        status=state,
        finished_at=utcnow(),
        report=report.model_dump(mode="json") if report is not None else None,
        error=error,
    )


Resume = Callable[[str, Mapping[str, Any]], RunImport | None]
"""The import a job of this kind with these stored options runs (None: none can)."""


def reap(
    sessions: sessionmaker[Session],
    spool_dir: Path,
    *,
    service: str,
    resume: Resume | None = None,
    stalled_after: float = STALLED_AFTER_SECONDS,
) -> int:
    """Settle the jobs of this service whose runner has been silent for ``stalled_after``
    seconds (its process died): start each again from its spooled upload where this process
    has it (and ``resume`` knows its kind), at most ``MAX_ATTEMPTS`` times in all, else end
    it ``failed`` saying so (``cancelled`` if that was asked); then remove the spooled
    uploads as old as that, except those of jobs not ended. Answer how
    many jobs it settled. Any process may run it, any number at once: each job is taken by
    one of them."""
    quiet_since = utcnow() - timedelta(seconds=stalled_after)
    with sessions() as session:
        stalled = session.execute(
            select(
                ImportJob.id,
                ImportJob.runner,
                ImportJob.kind,
                ImportJob.options,
                ImportJob.spool_name,
                ImportJob.attempts,
                ImportJob.cancel_requested,
            ).where(
                ImportJob.service == service,
                ImportJob.finished_at.is_(None),
                ImportJob.updated_at < quiet_since,
            )
        ).all()
    settled = 0
    for job in stalled:
        path = spool_dir / job.spool_name if job.spool_name else None
        run = None
        if (
            resume is not None
            and not job.cancel_requested
            and job.attempts < MAX_ATTEMPTS
            and job.options is not None
            and path is not None
            and path.exists()
        ):
            run = resume(job.kind, job.options)
        token = uuid.uuid4().hex
        values: dict[str, Any]
        if run is not None:
            values = {
                "runner": token,
                "attempts": job.attempts + 1,
                "status": ImportJobStatus.QUEUED,
                "stage": "",
                "rows_read": 0,
                "bytes_read": 0,
                "started_at": None,
            }
        elif job.cancel_requested:
            values = {"status": ImportJobStatus.CANCELLED, "finished_at": utcnow()}
        else:
            error = GAVE_UP if job.attempts >= MAX_ATTEMPTS else DIED
            values = {"status": ImportJobStatus.FAILED, "finished_at": utcnow(), "error": error}
        with sessions() as session:
            held = [
                ImportJob.updated_at < quiet_since,  # its runner did not just report
                ImportJob.runner.is_not_distinct_from(job.runner),
            ]
            taken = _update_running(session, job.id, held, values)
            session.commit()
        if not taken:  # another process settled it first, or its runner was only slow
            continue
        settled += 1
        if run is not None and path is not None:
            logger.warning("import job %d: its process died; started again", job.id)
            _launch(sessions, job.id, token, path, run, stalled_after)
    # A job that has not ended keeps its upload, however old (a dead runner's, waiting for a
    # process to start it again); the others' go once as old as the stalled time (a new one
    # may be on disk a moment before its job is recorded).
    with sessions() as session:
        kept = set(
            session.scalars(
                select(ImportJob.spool_name).where(
                    ImportJob.finished_at.is_(None), ImportJob.spool_name.is_not(None)
                )
            )
        )
    oldest = time.time() - stalled_after
    for leftover in spool_dir.glob(f"{SPOOL_PREFIX}*"):
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to remove
            if leftover.name not in kept and leftover.stat().st_mtime < oldest:
                leftover.unlink()
    return settled


def resumer(app: FastAPI) -> Resume:
    """Resume for this app's job kinds: the stored options read back into the kind's type."""
    kinds = kinds_of(app)

    def resume(kind: str, stored: Mapping[str, Any]) -> RunImport | None:
        job_kind = kinds.get(kind)
        if job_kind is None:
            return None
        try:
            return job_kind.run(app, job_kind.load(stored))
        except ValidationError:
            logger.exception("the stored options of an import job of kind %s are unusable", kind)
            return None

    return resume


async def reap_every(app: FastAPI, service: str) -> None:
    """``reap`` this service's jobs now and every ``import_reap_seconds`` (a service's
    lifespan task, until cancelled)."""
    settings: CommonSettings = app.state.settings
    sessions, spool_dir = app.state.sessionmaker, spool_directory(settings)
    resume = resumer(app)
    while True:
        try:
            await asyncio.to_thread(
                reap,
                sessions,
                spool_dir,
                service=service,
                resume=resume,
                stalled_after=settings.import_stalled_seconds,
            )
        except Exception:
            logger.exception("settling the import jobs of dead processes failed; retrying")
        await asyncio.sleep(settings.import_reap_seconds)


def accepted(job: ImportJob, stalled_after: float) -> JSONResponse:
    """The 202 answer to an upload run in the background."""
    return JSONResponse(
        ImportJobRead.of(job, stalled_after).model_dump(mode="json"),
        status_code=status.HTTP_202_ACCEPTED,
        headers={"Location": f"/api/v1/imports/jobs/{job.id}"},
    )


BACKGROUND_ANSWER: dict[int | str, dict[str, Any]] = {
    202: {"model": ImportJobRead, "description": "background=true: the job, started"}
}
Background = Annotated[
    bool,
    Query(
        description="Run it as a job: answered at once (202) with the job; follow "
        "GET /api/v1/imports/jobs/{id} for its progress and report"
    ),
]


class JobOptions(Protocol):
    """What a job records of the import it runs: every import's options say it."""

    @property
    def file_name(self) -> str | None: ...
    @property
    def dry_run(self) -> bool: ...
    @property
    def actor_id(self) -> int | None: ...


def run_or_start(
    request: Request,
    *,
    background: bool,
    session: Session,
    upload: UploadFile,
    service: str,
    kind: str,
    options: JobOptions,
) -> ImportReport | JSONResponse:
    """Run the import of this kind (one of the app's ``import_job_kinds``) in this request
    (its session commits after), or start it as a job."""
    app = request.app
    if not background:
        return kinds_of(app)[kind].run(app, options)(session, upload.file, None)
    path = spool(upload, spool_directory(app.state.settings))
    job = start(app=app, service=service, kind=kind, options=options, path=path)
    return accepted(job, app.state.settings.import_stalled_seconds)


def jobs_router(service: str) -> APIRouter:
    """The job routes of one service (each lists and cancels its own jobs)."""
    router = APIRouter(
        prefix="/imports/jobs", tags=["imports"], responses=error_responses(401, 422)
    )

    def _job(session: Session, job_id: int) -> ImportJob:
        job = session.scalar(
            select(ImportJob).where(ImportJob.id == job_id, ImportJob.service == service)
        )
        if job is None:
            raise NotFound(f"Import job {job_id} not found", resource="import_job", id=job_id)
        return job

    @router.get("", summary="List import jobs", operation_id="listImportJobs")
    def list_jobs(
        request: Request, _user: CurrentUser, session: SessionDep, page: PageDep
    ) -> Page[ImportJobRead]:
        """This service's import jobs, newest first."""
        stmt = select(ImportJob).where(ImportJob.service == service)
        found = paginate(session, stmt, page, [ImportJob.id.desc()])
        stalled_after = _stalled_after(request)
        return Page.of(found.map(lambda row: ImportJobRead.of(row[0], stalled_after)))

    @router.get(
        "/{job_id}",
        summary="An import job's progress and report",
        operation_id="getImportJob",
        responses=error_responses(404),
    )
    def get_job(
        request: Request, job_id: int, _user: CurrentUser, session: SessionDep
    ) -> ImportJobRead:
        """Status, rows read, how far into the file, rate and time left; the report once it
        ended (`succeeded`, `rejected`, `cancelled` or `failed`)."""
        return ImportJobRead.of(_job(session, job_id), _stalled_after(request))

    @router.post(
        "/{job_id}/cancel",
        summary="Cancel an import job",
        operation_id="cancelImportJob",
        responses=error_responses(403, 404),
    )
    def cancel_job(
        request: Request, job_id: int, _principal: ManagerUser, session: SessionDep
    ) -> ImportJobRead:
        """Stop it at its next batch; nothing of it is written. A job that ended already is
        answered as it is."""
        job = _job(session, job_id)
        if job.finished_at is None:
            job.cancel_requested = True
            session.flush()
        return ImportJobRead.of(job, _stalled_after(request))

    return router


def _stalled_after(request: Request) -> float:
    settings: CommonSettings = request.app.state.settings
    return settings.import_stalled_seconds
