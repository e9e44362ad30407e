"""Fixtures shared by the top-level tests: people with the roles staff have."""

import subprocess

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from tests.factories import UserFactory

PROJECT_APPS = ("partners", "timeline", "billing")


@pytest.fixture
def staff_user(db: None) -> User:
    """A staff member who may read every project model in the admin, and change nothing."""
    user = UserFactory(is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label__in=PROJECT_APPS, codename__startswith="view_")
    )
    return user


@pytest.fixture
def staff_client(client: Client, staff_user: User) -> Client:
    client.force_login(staff_user)
    return client


@pytest.fixture
def worker(transactional_db, queued) -> subprocess.Popen:
    """A real Celery worker process on every queue, stopped after the test."""
    from tests.support import start_worker

    process = start_worker(capture=True)
    yield process
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture
def queued(monkeypatch) -> None:
    """Send tasks to the broker instead of running them in-process, starting from an empty broker
    (an earlier test may have left follow-up tasks behind)."""
    from controltower.celery import app as celery_app

    monkeypatch.setattr(celery_app.conf, "task_always_eager", False)
    celery_app.control.purge()
