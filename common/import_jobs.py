"""Imports in the background: an upload with ``background=true`` is answered at once (202)
with a job, which runs the same import on a thread of the process that took it. Its status
route shows the progress (rows read, how far into the file, rate, time left) and, once it
ended, the report; a cancel request stops it at its next batch, and nothing is written.

The job's row is the only state shared between replicas: the runner writes its progress
there in short transactions of its own (never the import's, which commits once at the end),
and reads the cancel request back at the same moment, so any replica answers the status and
takes the cancel. A job whose process died (a restart, a crash) shows a progress that no
longer moves: ``stalled`` once it has not moved for five minutes. Every process then settles
it (``reap``, run every minute): the job ends ``failed`` saying so, and the spooled upload
left behind on disk goes (a live job's runner touches its file with each progress report,
so only a dead one's grows old). Nothing of it was written.

With orders that take stock (which land one by one), orders recorded before a cancel stay.
"""

import asyncio
import contextlib
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Annotated, Any, Protocol

from fastapi import APIRouter, FastAPI, Query, Request, UploadFile, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
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
# A runner writes its progress after every batch; this long without it, it is gone.
STALLED_AFTER_SECONDS = 300
REAP_EVERY_SECONDS = 60.0
SPOOL_PREFIX = "import-"
DIED = (
    "Its process stopped (a restart or a crash) before the import finished; nothing of it "
    "was written (orders that take stock: those recorded before stay, and importing the file "
    "again skips them). Upload the file again."
)
RunImport = Callable[[Session, IO[bytes], Progress | None], ImportReport]
"""Runs the import in the session given (not committing it), reporting its progress."""


class ImportCancelled(Exception):
    """A cancel was requested: the job stops and its transaction is rolled back."""


class ImportJobRead(BaseModel):
    """A background import: where it stands and, once it ended, its report."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    file_name: str | None
    dry_run: bool
    status: ImportJobStatus
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
            f"{STALLED_AFTER_SECONDS // 60} minutes: its process most likely died (nothing "
            "of it was written); within a minute it ends failed, saying so"
        ),
    ]
    report: ImportReport | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    updated_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, job: ImportJob) -> "ImportJobRead":
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
            and (utcnow() - job.updated_at).total_seconds() > STALLED_AFTER_SECONDS,
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


def start(
    *,
    sessions: sessionmaker[Session],
    service: str,
    kind: str,
    file_name: str | None,
    dry_run: bool,
    actor_id: int | None,
    path: Path,
    run: RunImport,
) -> ImportJob:
    """Record the job and start it on a thread of its own; answer the job as recorded."""
    with sessions() as session:
        job = ImportJob(
            service=service,
            kind=kind,
            file_name=file_name,
            dry_run=dry_run,
            status=ImportJobStatus.QUEUED,
            bytes_total=path.stat().st_size,
            created_by_id=actor_id,
        )
        session.add(job)
        session.commit()
    threading.Thread(
        target=_run, args=(sessions, job.id, path, run), name=f"import-job-{job.id}", daemon=True
    ).start()
    return job


def _set(sessions: sessionmaker[Session], job_id: int, **values: Any) -> bool:
    """Update the job (unless it has ended) in a transaction of its own; answer whether to
    stop: a cancel was requested, or the job was ended meanwhile (``reap`` took this runner
    for dead)."""
    with sessions() as session:
        session.execute(
            update(ImportJob)
            .where(ImportJob.id == job_id, ImportJob.finished_at.is_(None))
            .values(**values)
        )
        cancel, finished = session.execute(
            select(ImportJob.cancel_requested, ImportJob.finished_at).where(ImportJob.id == job_id)
        ).one()
        session.commit()
    return bool(cancel) or finished is not None


def _run(sessions: sessionmaker[Session], job_id: int, path: Path, run: RunImport) -> None:
    last = 0.0

    def progress(stage: str, rows: int, position: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < 0.2 and stage != "done":  # a row per batch at most 5 times a second
            return
        last = now
        with contextlib.suppress(OSError):
            path.touch()  # alive: ``reap`` leaves the file alone
        if _set(sessions, job_id, stage=stage, rows_read=rows, bytes_read=position):
            raise ImportCancelled

    try:
        if _set(sessions, job_id, status=ImportJobStatus.RUNNING, started_at=utcnow()):
            raise ImportCancelled
        with sessions() as session, path.open("rb") as binary:
            try:
                report = run(session, binary, progress)
                session.commit()
            except BaseException:
                session.rollback()
                raise
        # (the whole file was read, whatever the last progress report said)
        _end(sessions, job_id, ImportJobStatus.SUCCEEDED, report=report, read_all=True)
    except ImportRejected as exc:
        _end(sessions, job_id, ImportJobStatus.REJECTED, report=exc.report)
    except ImportCancelled:
        _end(sessions, job_id, ImportJobStatus.CANCELLED)
    except Exception as exc:
        logger.exception("import job %s failed", job_id)
        _end(sessions, job_id, ImportJobStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:500])
    finally:
        path.unlink(missing_ok=True)


def _end(
    sessions: sessionmaker[Session],
    job_id: int,
    state: ImportJobStatus,
    *,
    report: ImportReport | None = None,
    error: str | None = None,
    read_all: bool = False,
) -> None:
    _set(
        sessions,
        job_id,
        **({"bytes_read": ImportJob.bytes_total} if read_all else {}),
        status=state,
        finished_at=utcnow(),
        report=report.model_dump(mode="json") if report is not None else None,
        error=error,
    )


def reap(sessions: sessionmaker[Session], spool_dir: Path) -> int:
    """End the jobs whose runner has been silent for ``STALLED_AFTER_SECONDS`` (its process
    died) as ``failed``, saying so, and remove the spooled uploads no runner has touched for
    as long; answer how many jobs ended. Any process may run it, any number at once."""
    quiet_since = utcnow() - timedelta(seconds=STALLED_AFTER_SECONDS)
    with sessions() as session:
        ended = (
            session.connection()
            .execute(
                update(ImportJob)
                .where(ImportJob.finished_at.is_(None), ImportJob.updated_at < quiet_since)
                .values(status=ImportJobStatus.FAILED, finished_at=utcnow(), error=DIED)
            )
            .rowcount
        )
        session.commit()
    oldest = time.time() - STALLED_AFTER_SECONDS
    for path in spool_dir.glob(f"{SPOOL_PREFIX}*"):
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to remove
            if path.stat().st_mtime < oldest:
                path.unlink()
    return ended


async def reap_every(app: FastAPI, seconds: float = REAP_EVERY_SECONDS) -> None:
    """``reap`` every ``seconds`` (a service's lifespan task, until cancelled)."""
    sessions, spool_dir = app.state.sessionmaker, spool_directory(app.state.settings)
    while True:
        try:
            if ended := await asyncio.to_thread(reap, sessions, spool_dir):
                logger.warning("%d import job(s) whose process died ended as failed", ended)
        except Exception:
            logger.exception("settling the import jobs of dead processes failed; retrying")
        await asyncio.sleep(seconds)


def accepted(job: ImportJob) -> JSONResponse:
    """The 202 answer to an upload run in the background."""
    return JSONResponse(
        ImportJobRead.of(job).model_dump(mode="json"),
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
    run: RunImport,
) -> ImportReport | JSONResponse:
    """Run the import in this request (its session commits after), or start it as a job."""
    if not background:
        return run(session, upload.file, None)
    path = spool(upload, spool_directory(request.app.state.settings))
    job = start(
        sessions=request.app.state.sessionmaker,
        service=service,
        kind=kind,
        file_name=options.file_name,
        dry_run=options.dry_run,
        actor_id=options.actor_id,
        path=path,
        run=run,
    )
    return accepted(job)


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
    def list_jobs(_user: CurrentUser, session: SessionDep, page: PageDep) -> Page[ImportJobRead]:
        """This service's import jobs, newest first."""
        stmt = select(ImportJob).where(ImportJob.service == service)
        found = paginate(session, stmt, page, [ImportJob.id.desc()])
        return Page.of(found.map(lambda row: ImportJobRead.of(row[0])))

    @router.get(
        "/{job_id}",
        summary="An import job's progress and report",
        operation_id="getImportJob",
        responses=error_responses(404),
    )
    def get_job(job_id: int, _user: CurrentUser, session: SessionDep) -> ImportJobRead:
        """Status, rows read, how far into the file, rate and time left; the report once it
        ended (`succeeded`, `rejected`, `cancelled` or `failed`)."""
        return ImportJobRead.of(_job(session, job_id))

    @router.post(
        "/{job_id}/cancel",
        summary="Cancel an import job",
        operation_id="cancelImportJob",
        responses=error_responses(403, 404),
    )
    def cancel_job(job_id: int, _principal: ManagerUser, session: SessionDep) -> ImportJobRead:
        """Stop it at its next batch; nothing of it is written. A job that ended already is
        answered as it is."""
        job = _job(session, job_id)
        if job.finished_at is None:
            job.cancel_requested = True
            session.flush()
        return ImportJobRead.of(job)

    return router
