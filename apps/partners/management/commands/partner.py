"""``manage.py partner CODE --kind KIND``: create or update a partner from scripts."""

import argparse
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.partners.models import EdiIdentifier, Partner
from apps.partners.services import partner_upsert


def describe(error: ValidationError) -> str:
    """One line for a validation error, naming each field that failed."""
    if hasattr(error, "error_dict"):
        return "; ".join(f"{field}: {' '.join(messages)}" for field, messages in error.message_dict.items())
    return " ".join(error.messages)


def edi_id(text: str) -> tuple[str, str]:
    """Parse ``QUALIFIER:ID`` (``ZZ:ACMEUS``) into a checked (qualifier, value) pair."""
    qualifier, colon, value = (part.strip() for part in text.partition(":"))
    if not (colon and qualifier and value):
        raise argparse.ArgumentTypeError(f"{text!r} is not QUALIFIER:ID, e.g. ZZ:ACMEUS")
    try:
        EdiIdentifier(qualifier=qualifier, value=value).clean_fields(exclude=["partner"])
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {describe(exc)}") from exc
    return qualifier, value


class Command(BaseCommand):
    help = "Create or update a partner by code. EDI identifiers are added, never removed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("code", help="Partner code, e.g. ACME.")
        parser.add_argument("--kind", required=True, choices=Partner.Kind.values)
        parser.add_argument("--name", help="Display name (defaults to the code for a new partner).")
        parser.add_argument(
            "--edi-id",
            dest="edi_ids",
            action="append",
            type=edi_id,
            default=[],
            metavar="QUALIFIER:ID",
            help="An EDI interchange id the partner sends under, e.g. ZZ:ACMEUS; repeatable.",
        )
        parser.add_argument("--region", help="Region, e.g. EU-West.")
        parser.add_argument("--time-zone", help="IANA time zone, e.g. Europe/Paris.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            partner, created = partner_upsert(
                code=options["code"],
                kind=options["kind"],
                name=options["name"],
                region=options["region"],
                time_zone=options["time_zone"],
                edi_ids=options["edi_ids"],
            )
        except ValidationError as exc:
            raise CommandError(f"Partner {options['code']!r} not saved: {describe(exc)}") from exc
        identifiers = ", ".join(str(identifier) for identifier in partner.edi_identifiers.all())
        self.stdout.write(
            f"{'created' if created else 'updated'} {partner.code}: {partner.name} ({partner.get_kind_display()})"
            + (f" EDI {identifiers}" if identifiers else "")
        )
