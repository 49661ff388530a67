"""Webhook delivery in a process of its own, started and stopped with the service that owns it.

``run_webhooks`` (a service's lifespan task) starts ``python -m common.webhooks.worker``,
hands it the service's settings on its stdin (the database URL and its password among
them: never in its arguments or environment), restarts it if it dies, and stops it with
the service. The process runs the ``WebhookRunner`` (fan-out and delivery threads) and dies
with its parent: on Linux the kernel kills it when the service's process ends (a service
killed outright takes its deliveries in flight with it, unrecorded: their leases run out
and the restarted service sends them again, as ever); elsewhere it stops by itself once it
sees its parent gone.

Why a process: on the cores the requests use, delivery threads in the service's own process
hold its interpreter lock while they read, sign, POST and record, and every request waits
for it meanwhile. The sale path with one endpoint taking every event of every sale, two
cores, 4 rounds of 1,000 sales each way (bench/webhooks.py): -14.0% against webhooks off
with the threads in products_service, +2.4% with the same threads in a process beside it,
every message delivered during the sales in both.
"""

import asyncio
import contextlib
import ctypes
import ctypes.util
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic_core import to_jsonable_python

from common.observability import configure_logging
from common.settings import CommonSettings
from common.webhooks.delivery import WebhookRunner
from common.webhooks.fanout import Source

logger = logging.getLogger(__name__)

RESTART_SECONDS = 1.0  # wait before starting a worker that died again
STOP_SECONDS = 8.0  # a stopping worker finishes its POSTs in flight (WebhookRunner.stop: 5 s)
PARENT_CHECK_SECONDS = 0.5
PR_SET_PDEATHSIG = 1  # <sys/prctl.h>
# Where ``common`` is imported from, for the worker to import the same code.
SOURCE_ROOT = str(Path(__file__).resolve().parents[2])


def _config(settings: CommonSettings, sources: Sequence[Source]) -> bytes:
    """The settings as the worker rebuilds them: every field, secrets in clear."""
    fields = {
        name: value.get_secret_value() if isinstance(value, SecretStr) else value
        for name, value in settings.model_dump().items()
    }
    return json.dumps({"settings": to_jsonable_python(fields), "sources": list(sources)}).encode()


def start_worker(settings: CommonSettings, sources: Sequence[Source]) -> subprocess.Popen[bytes]:
    """The worker process, its settings written to it; its output is the service's."""
    paths = [SOURCE_ROOT, os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    process = subprocess.Popen(  # noqa: S603 (this interpreter, a module of ours)
        [sys.executable, "-m", "common.webhooks.worker", str(os.getpid())],
        stdin=subprocess.PIPE,
        env=env,
    )
    assert process.stdin is not None
    with process.stdin:
        process.stdin.write(_config(settings, sources))
    return process


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    """Ask it to stop (it finishes the POSTs in flight), then make it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def run_webhooks(settings: CommonSettings, *, sources: Sequence[Source]) -> None:
    """Run webhook fan-out of the ``sources``' outboxes and delivery in a worker process
    until cancelled (a service's lifespan task); does nothing when ``webhooks_enabled`` is
    off."""
    if not settings.webhooks_enabled:
        return
    process = start_worker(settings, sources)
    try:
        while True:
            code = await asyncio.to_thread(process.wait)
            logger.error("the webhook worker exited (%s); starting it again", code)
            await asyncio.sleep(RESTART_SECONDS)
            process = start_worker(settings, sources)
    finally:
        await asyncio.shield(asyncio.to_thread(stop_worker, process))


def _die_with_parent() -> None:
    """On Linux, have the kernel SIGKILL this process when its parent's process ends."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def main(parent_pid: int) -> None:
    """The worker: run until SIGTERM, or until the parent process is gone."""
    _die_with_parent()
    if os.getppid() != parent_pid:  # gone before the line above took effect
        return
    configure_logging()
    config: dict[str, Any] = json.loads(sys.stdin.buffer.read())
    settings = CommonSettings(**config["settings"])
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    runner = WebhookRunner(settings, config["sources"])
    runner.start()
    try:
        while os.getppid() == parent_pid and not stop.wait(PARENT_CHECK_SECONDS):
            pass
    finally:
        runner.stop()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main(int(sys.argv[1]))
