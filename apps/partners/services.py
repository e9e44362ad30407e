import hashlib
import hmac
import secrets
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.partners.mapping import mapping_changes, mapping_problems, sensitive_areas
from apps.partners.models import ApiToken, Channel, ChannelMappingVersion, EdiIdentifier, Partner

TOKEN_PREFIX = "ct_"  # noqa: S105 - a public marker, not a secret
# Recording every use would turn each API call into a write; once a minute is enough to audit.
TOKEN_TOUCH_INTERVAL = timedelta(minutes=1)
# prefix -> (monotonic expiry, the active token with its partner, or None); see api_token_authenticate.
_tokens: dict[str, tuple[float, ApiToken | None]] = {}
CACHED_TOKENS_MAX = 10_000  # unknown prefixes are kept too; a flood of made-up tokens stays bounded


@transaction.atomic
def partner_upsert(
    *,
    code: str,
    kind: str,
    name: str | None = None,
    region: str | None = None,
    time_zone: str | None = None,
    edi_ids: list[tuple[str, str]] | None = None,
) -> tuple[Partner, bool]:
    """Create or update a partner by code; EDI identifiers are added, never removed.

    Raises ``django.core.exceptions.ValidationError`` on a bad code, kind or time zone, or an EDI
    identifier that belongs to another partner.
    """
    partner = Partner.objects.select_for_update().filter(code=code).first()
    created = partner is None
    if created:
        partner = Partner(code=code, name=name or code)
    partner.kind = kind
    if name:
        partner.name = name
    if region is not None:
        partner.region = region
    if time_zone:
        partner.time_zone = time_zone
    partner.full_clean()
    partner.save()
    for qualifier, value in edi_ids or []:
        identifier = EdiIdentifier.objects.filter(qualifier=qualifier, value=value).first()
        if identifier is None:
            identifier = EdiIdentifier(partner=partner, qualifier=qualifier, value=value)
            identifier.full_clean()
            identifier.save()
        elif identifier.partner_id != partner.id:
            raise ValidationError(
                f"EDI identifier {qualifier}:{value} already belongs to partner {identifier.partner.code}"
            )
    return partner, created


def api_token_create(*, partner: Partner, name: str, scopes: list[str] | None = None) -> tuple[ApiToken, str]:
    """Create a token and return it with its secret, which is never stored and never shown again.

    Without ``scopes`` it may send what partners of its kind send (``apps.partners.scopes``).
    """
    prefix = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    token = ApiToken.objects.create(partner=partner, name=name, prefix=prefix, hashed=_hash(secret), scopes=scopes)
    return token, f"{TOKEN_PREFIX}{prefix}_{secret}"


def api_token_revoke(*, token: ApiToken) -> None:
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    forget_api_tokens()


def api_token_scopes_set(*, token: ApiToken, scopes: list[str]) -> None:
    """What the token may send from now on (its next request in this process, within the cache time elsewhere)."""
    ApiToken.objects.filter(pk=token.pk).update(scopes=scopes)
    forget_api_tokens()


def api_token_authenticate(raw: str, *, fresh: bool = False) -> ApiToken | None:
    """The active token ``raw`` names, or None (an inactive partner's tokens are cut off too).
    Constant-time comparison of the secret's hash.

    The token and its partner are kept for ``WEBHOOK_CHANNEL_CACHE_SECONDS`` in this process
    (unless ``fresh``), as webhook channels are: a revoked token or a deactivated partner stops
    working everywhere within that time, and at once in the process that made the change. Only
    the hash is kept; the secret is checked against it on every request.
    """
    if not raw.startswith(TOKEN_PREFIX):
        return None
    prefix, _, secret = raw.removeprefix(TOKEN_PREFIX).partition("_")
    if not prefix or not secret:
        return None
    token = _active_token(prefix, fresh=fresh)
    if token is None or not hmac.compare_digest(token.hashed, _hash(secret)):
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > TOKEN_TOUCH_INTERVAL:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now  # the kept token too, or each request until it expires would write again
    return token


def _active_token(prefix: str, *, fresh: bool) -> ApiToken | None:
    now = time.monotonic()
    cached = _tokens.get(prefix)
    if cached is not None and cached[0] > now and not fresh:
        return cached[1]
    token = (
        ApiToken.objects.select_related("partner")
        .filter(prefix=prefix, revoked_at__isnull=True, partner__active=True)
        .first()
    )
    if len(_tokens) >= CACHED_TOKENS_MAX:
        _tokens.clear()
    _tokens[prefix] = (now + settings.WEBHOOK_CHANNEL_CACHE_SECONDS, token)
    return token


def forget_api_tokens(**kwargs: object) -> None:
    """A token or a partner changed here: look tokens up afresh (now, and again once the change is
    committed, so a request that read the old row meanwhile does not keep it)."""
    _tokens.clear()
    transaction.on_commit(_tokens.clear)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class MappingRefused(ValueError):
    """A mapping that cannot be saved; ``problems`` has one line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@transaction.atomic
def channel_mapping_save(
    *,
    channel: Channel,
    mapping: dict[str, Any],
    author: AbstractBaseUser | None,
    comment: str = "",
    expected_version: int | None = None,
    reverted_to: int | None = None,
) -> ChannelMappingVersion | None:
    """Save ``mapping`` as the channel's next mapping version and make it current; None when it is
    the mapping the channel has already (nothing is recorded).

    Raises MappingRefused when the checks find problems, or when ``expected_version`` is given and
    someone saved another version since (the editor saw an older mapping). Locks the channel row
    for the transaction: two saves of the same channel get consecutive numbers. Messages parsed
    after the commit (new ones and dead letters replayed) read the new mapping.
    """
    locked = Channel.objects.select_for_update().get(pk=channel.pk)
    if expected_version is not None and locked.mapping_version != expected_version:
        raise MappingRefused(
            [
                f"the mapping was saved as version {locked.mapping_version} while you edited version "
                f"{expected_version}; reload it and apply your change again"
            ]
        )
    problems = mapping_problems(locked.format, mapping)
    if problems:
        raise MappingRefused(problems)
    changes = mapping_changes(locked.mapping_overrides or {}, mapping)
    if not changes:
        return None
    version = ChannelMappingVersion.objects.create(
        channel=locked,
        number=locked.mapping_version + 1,
        mapping=mapping,
        changes=changes,
        areas=sensitive_areas(changes),
        author=author,
        author_name=author.get_username() if author else "",
        comment=comment[:500],
        reverted_to=reverted_to,
    )
    locked.mapping_overrides, locked.mapping_version = mapping, version.number
    locked.save(update_fields=["mapping_overrides", "mapping_version", "updated_at"])
    channel.mapping_overrides, channel.mapping_version = mapping, version.number
    if author is not None:
        LogEntry.objects.create(
            user_id=author.pk,
            content_type=ContentType.objects.get_for_model(Channel),
            object_id=str(locked.pk),
            object_repr=str(locked)[:200],
            action_flag=CHANGE,
            change_message=_mapping_log_message(version),
        )
    return version


def channel_mapping_revert(
    *, channel: Channel, number: int, author: AbstractBaseUser | None, comment: str = ""
) -> ChannelMappingVersion | None:
    """Make version ``number``'s mapping current again, as a new version naming the one it restores."""
    old = ChannelMappingVersion.objects.get(channel=channel, number=number)
    why = comment or f"Reverted to version {number}"
    return channel_mapping_save(channel=channel, mapping=old.mapping, author=author, comment=why, reverted_to=number)


def _mapping_log_message(version: ChannelMappingVersion) -> str:
    areas = f" (touches {', '.join(version.areas)})" if version.areas else ""
    paths = ", ".join(change["path"] for change in version.changes[:10])
    more = f" and {len(version.changes) - 10} more" if len(version.changes) > 10 else ""
    return f"Mapping version {version.number}{areas}: changed {paths}{more}."[:2000]
