"""Test plumbing shared by the suites that need real processes: Celery workers and Chromium."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent

HAS_SERVICES = bool(settings.REDIS_URL) and settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
if not HAS_SERVICES and os.environ.get("REQUIRE_SERVICES"):
    raise RuntimeError("REQUIRE_SERVICES is set but REDIS_URL or a PostgreSQL DATABASE_URL is missing")
needs_services = pytest.mark.skipif(
    not HAS_SERVICES, reason="needs REDIS_URL and a PostgreSQL DATABASE_URL (set by .ci/run)"
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if not CHROMIUM and os.environ.get("REQUIRE_BROWSER"):
    raise RuntimeError("REQUIRE_BROWSER is set but no chromium is installed")
needs_chromium = pytest.mark.skipif(not CHROMIUM, reason="needs Debian's chromium (installed by .ci/run)")
# Debian's Chromium, never a downloaded one; without the background flags it dials out at start.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


def database_url() -> str:
    """The test database as a URL, for a worker process to use the same one."""
    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def start_worker(*, capture: bool = False) -> subprocess.Popen:
    """A real Celery worker on every queue, against the test database and Redis.

    With ``capture`` the worker logs to a file (see ``worker_output``): a pipe nobody reads fills
    up after 64 KB of log lines and blocks the worker mid-task. The file is opened for appending,
    so reading it (which moves the offset the worker shares) never makes the worker overwrite it.
    """
    env = {**os.environ, "DATABASE_URL": database_url(), "CELERY_TASK_ALWAYS_EAGER": "false"}
    command = [sys.executable, "-m", "celery", "-A", "controltower", "worker", "--pool=solo"]
    command += ["--loglevel=INFO" if capture else "--loglevel=WARNING", "--queues=critical,default,bulk,outbound"]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    log = tempfile.TemporaryFile(mode="a+") if capture else subprocess.DEVNULL  # noqa: SIM115 (lives with the worker)
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    process.log = log
    return process


def worker_output(worker: subprocess.Popen, tail: int = 3000) -> str:
    """The last lines a worker started with ``capture`` logged."""
    if worker.log is subprocess.DEVNULL:
        return "(not captured)"
    worker.log.flush()
    worker.log.seek(0)
    return worker.log.read()[-tail:]


def wait_for(condition: Callable[[], bool], worker: subprocess.Popen, timeout: float = 60) -> None:
    """Poll ``condition`` until it holds; fail with the worker's output if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if worker.poll() is not None:
            pytest.fail(f"worker exited: {worker_output(worker)}")
        time.sleep(0.3)
    worker.terminate()
    worker.wait(timeout=20)
    pytest.fail(f"not done within {timeout}s; worker said: {worker_output(worker)}")


def http_scope(path: str, headers: dict[str, str], *, method: str = "POST") -> dict:
    """An ASGI HTTP scope, as a server hands a request to the application."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(name.lower().encode(), value.encode()) for name, value in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
