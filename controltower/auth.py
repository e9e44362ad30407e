"""Sign-in throttling: who a sign-in attempt comes from, and the lockout check before every backend."""

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.http import HttpRequest


class LockoutBackend(AxesStandaloneBackend):
    """django-axes' lockout check, for sign-ins over HTTP only.

    Every HTTP sign-in (``/login/``, ``/admin/login/``) authenticates with its request, and is
    checked. A call without one (the test client's ``login``, a shell) has no address to key a
    lockout on, so it is left to the next backend instead of raising.
    """

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: object
    ) -> None:
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def client_ip(request: HttpRequest) -> str:
    """The address a request comes from, as the outermost of our ``TRUSTED_PROXY_COUNT`` proxies saw it.

    Each proxy appends the address it received the request from to ``X-Forwarded-For``; anything
    further left was written by the client and is ignored. With no proxies configured (the
    default) the header is ignored altogether.
    """
    hops = settings.TRUSTED_PROXY_COUNT
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    if hops and len(forwarded) >= hops and forwarded[-hops]:
        return forwarded[-hops]
    return request.META.get("REMOTE_ADDR", "")
