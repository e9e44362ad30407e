"""API authentication for partners: ``Authorization: Bearer ct_<prefix>_<secret>``."""

from dataclasses import dataclass

from django.http import HttpRequest
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission

from apps.partners.models import ApiToken, Partner
from apps.partners.scopes import sender_scopes
from apps.partners.services import TOKEN_PREFIX, api_token_authenticate


@dataclass(frozen=True)
class PartnerPrincipal:
    """The caller behind a partner token: it acts as that partner and nothing else."""

    partner: Partner
    scopes: tuple[str, ...] = ()
    is_authenticated: bool = True
    is_staff: bool = False
    is_superuser: bool = False

    @property
    def pk(self) -> None:
        return None

    def has_perm(self, perm: str, obj: object = None) -> bool:
        return False


class PartnerTokenAuthentication(BaseAuthentication):
    keyword = b"bearer"

    def authenticate(self, request: HttpRequest) -> tuple[PartnerPrincipal, ApiToken] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("Authorization header must be 'Bearer <token>'.")
        raw = parts[1].decode("latin-1")
        if not raw.startswith(TOKEN_PREFIX):
            return None
        token = api_token_authenticate(raw)
        if token is None:
            raise AuthenticationFailed("Invalid or revoked API token, or its partner is inactive.")
        scopes = sender_scopes(token.partner.kind, token.scopes)
        return PartnerPrincipal(partner=token.partner, scopes=tuple(scopes)), token

    def authenticate_header(self, request: HttpRequest) -> str:
        return 'Bearer realm="api"'


class IsPerson(BasePermission):
    """A signed-in person (staff of ours), never a partner's token: the default for the API."""

    def has_permission(self, request: HttpRequest, view: object) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and not isinstance(user, PartnerPrincipal))


class IsPartnerOrPerson(BasePermission):
    """Receivers: a partner writing as itself, or a signed-in person acting for a partner."""

    def has_permission(self, request: HttpRequest, view: object) -> bool:
        return bool(request.user and request.user.is_authenticated)
