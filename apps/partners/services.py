from django.core.exceptions import ValidationError
from django.db import transaction

from apps.partners.models import EdiIdentifier, Partner


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
