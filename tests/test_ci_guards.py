"""CI runs with REQUIRE_SERVICES and REQUIRE_BROWSER: a missing service fails the run, never skips it."""

import os
import subprocess
import sys

from tests.support import ROOT


def _import_support(**env: str) -> subprocess.CompletedProcess:
    unset = ("DATABASE_URL", "REDIS_URL", "REQUIRE_SERVICES")
    clean = {key: value for key, value in os.environ.items() if key not in unset}
    clean.update(DJANGO_SETTINGS_MODULE="controltower.settings", SECRET_KEY="x" * 50, **env)
    code = "import django; django.setup(); import tests.support"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True)


def test_missing_services_fail_when_they_are_required():
    required = _import_support(REQUIRE_SERVICES="1")
    assert required.returncode != 0
    assert "REQUIRE_SERVICES is set" in required.stderr


def test_missing_services_only_skip_when_not_required():
    assert _import_support().returncode == 0
