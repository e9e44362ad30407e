"""Test plumbing shared by the suites that need real processes: Celery workers and Chromium."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent

HAS_SERVICES = bool(settings.REDIS_URL) and settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
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
    """A real Celery worker on every queue, against the test database and Redis."""
    env = {**os.environ, "DATABASE_URL": database_url(), "CELERY_TASK_ALWAYS_EAGER": "false"}
    command = [sys.executable, "-m", "celery", "-A", "controltower", "worker", "--pool=solo"]
    command += ["--loglevel=INFO" if capture else "--loglevel=WARNING", "--queues=critical,default,bulk"]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    output = subprocess.PIPE if capture else subprocess.DEVNULL
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, text=True)
