"""Fixtures shared by the top-level tests: people with the roles staff have."""

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
