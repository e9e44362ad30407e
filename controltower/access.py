"""Who may read and do what: a Django permission, granted by a role (``apps/exceptions/roles.py``)
or by hand in admin, checked the same way by pages, the API and websockets.

Views name the permission, never a group: an admin who moves a permission between roles moves
what each role sees.
"""

from collections.abc import Callable
from typing import Any, TypeVar

from channels.db import database_sync_to_async
from django.contrib.auth.decorators import login_required, permission_required
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from apps.partners.authentication import IsPerson

View = TypeVar("View", bound=Callable[..., Any])


def role_required(perm: str) -> Callable[[View], View]:
    """A page for people granted ``perm``: anonymous visitors go to the login page, others get 403."""

    def decorator(view: View) -> View:
        return login_required(permission_required(perm, raise_exception=True)(view))

    return decorator


def person_with(perm: str) -> type[BasePermission]:
    """An API permission: a signed-in person (never a partner's token) granted ``perm``."""

    class PersonWithPermission(IsPerson):
        def has_permission(self, request: Request, view: object) -> bool:
            return super().has_permission(request, view) and request.user.has_perm(perm)

    PersonWithPermission.__name__ = PersonWithPermission.__qualname__ = f"PersonWith[{perm}]"
    return PersonWithPermission


async def websocket_allows(scope: dict[str, Any], perm: str) -> bool:
    """Whether the person behind a websocket (``AuthMiddlewareStack`` puts them in the scope) holds ``perm``."""
    user = scope.get("user")
    if user is None or not user.is_authenticated:
        return False
    return await database_sync_to_async(user.has_perm)(perm)
