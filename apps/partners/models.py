import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

from apps.partners.network import url_refusal
from apps.partners.scopes import SCOPES, default_scopes

code_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", "Use letters, digits, dot, dash or underscore, starting with a letter or digit."
)


def validate_time_zone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(f"Unknown time zone {value!r}; use an IANA name such as Europe/Paris.") from exc


def validate_scopes(value: object) -> None:
    if value is None:
        return
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise ValidationError({"scopes": "Scopes must be a list of scope names."})
    unknown = sorted(set(value) - set(SCOPES))
    if unknown:
        raise ValidationError({"scopes": f"Unknown scope {', '.join(unknown)}; known: {', '.join(SCOPES)}."})


class Partner(models.Model):
    class Kind(models.TextChoices):
        CUSTOMER = "customer", "Customer"
        CARRIER = "carrier", "Carrier"
        WAREHOUSE = "warehouse", "Warehouse"
        ERP = "erp", "ERP"
        TMS = "tms", "TMS"
        SHOP = "shop", "eCommerce shop"

    code = models.CharField(max_length=40, unique=True, validators=[code_validator])
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=Kind.choices, db_index=True)
    region = models.CharField(max_length=60, blank=True)
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


class EdiIdentifier(models.Model):
    """An interchange id a partner sends under (ISA05/ISA06, GS02, UNB sender)."""

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="edi_identifiers")
    qualifier = models.CharField(max_length=4, help_text="ISA05 qualifier such as ZZ, 01, 08, 12; or the UNB code.")
    value = models.CharField(max_length=35)

    class Meta:
        ordering = ["qualifier", "value"]
        constraints = [models.UniqueConstraint(fields=["qualifier", "value"], name="unique_edi_identifier")]

    def __str__(self) -> str:
        return f"{self.qualifier}:{self.value}"


class Channel(models.Model):
    class Format(models.TextChoices):
        X12 = "x12", "EDI X12"
        EDIFACT = "edifact", "EDIFACT"
        CSV = "csv", "CSV"
        JSON = "json", "Canonical JSON"
        WEBHOOK = "webhook", "Webhook (format detected, or set by mapping_overrides.adapter)"
        API = "api", "REST API"
        POLL = "poll", "Carrier tracking pull"

    class Direction(models.TextChoices):
        INBOUND = "inbound", "Inbound"
        OUTBOUND = "outbound", "Outbound"

    class Priority(models.TextChoices):
        CRITICAL = "critical", "Critical"
        DEFAULT = "default", "Default"
        BULK = "bulk", "Bulk"

    class SignatureScheme(models.TextChoices):
        OURS = "ours", "Control Tower (X-Timestamp and X-Signature over timestamp + body)"
        SHOPIFY = "shopify", "Shopify (X-Shopify-Hmac-Sha256 over the body; Shopify's order and fulfillment topics)"
        STANDARD = "standard", "Standard Webhooks (webhook-id, webhook-timestamp and webhook-signature)"

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="channels")
    code = models.CharField(max_length=40, validators=[code_validator])
    name = models.CharField(max_length=200, blank=True)
    format = models.CharField(max_length=20, choices=Format.choices)
    direction = models.CharField(max_length=10, choices=Direction.choices, default=Direction.INBOUND)
    active = models.BooleanField(default=True)
    priority = models.CharField(
        max_length=10,
        choices=Priority.choices,
        default=Priority.DEFAULT,
        help_text="Queue for this channel's messages; critical events always use the critical queue.",
    )
    # Secrets are write-only (not editable: no form or serializer can show them); they are set and
    # masked through apps.partners.credentials.
    webhook_secret = models.CharField(
        max_length=128,
        blank=True,
        editable=False,
        help_text="Shared secret for HMAC-SHA256 webhook signatures (X-Signature over timestamp + '.' + body).",
    )
    webhook_secret_previous = models.CharField(
        max_length=128, blank=True, editable=False, help_text="The secret before the last rotation."
    )
    webhook_secret_previous_until = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Signatures made with the previous secret verify until then."
    )
    webhook_secret_rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    signature_scheme = models.CharField(
        max_length=10,
        choices=SignatureScheme.choices,
        default=SignatureScheme.OURS,
        help_text="How webhooks to this channel are signed. Shopify: the secret is the app's shared secret, and "
        "the webhook id recognises Shopify's retries. Standard Webhooks: the secret is the sender's whsec_ secret, "
        "and webhook-id recognises its retries.",
    )
    customer = models.ForeignKey(
        Partner,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="shop_channels",
        limit_choices_to={"kind": Partner.Kind.CUSTOMER},
        help_text="An eCommerce shop's channel: the customer whose orders the shop sends. Its orders are that "
        "customer's, and the shop may act only on that customer's orders and its own.",
    )
    poll_headers = models.JSONField(
        default=dict,
        blank=True,
        editable=False,
        help_text="HTTP headers a tracking pull sends, such as the carrier's API key.",
    )
    expected_cadence = models.DurationField(
        null=True,
        blank=True,
        help_text="How often this channel normally sends (e.g. 01:00:00); quieter than that is flagged.",
    )
    scopes = models.JSONField(
        null=True,
        blank=True,
        default=None,
        help_text="What this channel may send: scope names from apps/partners/scopes.py. Left empty when "
        "created, it gets the partner kind's defaults; an empty list allows nothing.",
    )
    mapping_overrides = models.JSONField(
        default=dict,
        blank=True,
        help_text='Per-channel mapping, e.g. {"status_codes": {"X1": "shipment.delivered"}, "columns": {...}}.',
    )
    mapping_version = models.PositiveIntegerField(
        default=0,
        editable=False,
        help_text="The number of the mapping's latest saved version (0: never changed since the channel was made).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["partner__code", "code"]
        constraints = [models.UniqueConstraint(fields=["partner", "code"], name="unique_channel_code_per_partner")]
        permissions = [("change_channel_mapping", "Can change channel mappings and preview samples")]

    def __str__(self) -> str:
        return f"{self.partner.code}/{self.code}"

    def save(self, *args, **kwargs) -> None:
        if self.scopes is None:
            self.scopes = default_scopes(self.partner.kind)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        if not isinstance(self.mapping_overrides, dict):
            raise ValidationError({"mapping_overrides": "Mapping overrides must be a JSON object."})
        validate_scopes(self.scopes)
        self._clean_shop_settings()
        url = self.mapping_overrides.get("url") if self.format == self.Format.POLL else None
        if isinstance(url, str) and (refusal := url_refusal(url, resolve_name=True)):
            raise ValidationError({"mapping_overrides": f"url: {refusal}."})

    def _clean_shop_settings(self) -> None:
        partner = self.partner if self.partner_id else None
        if self.customer_id is not None:
            if self.customer.kind != Partner.Kind.CUSTOMER:
                raise ValidationError({"customer": f"{self.customer.code} is not a customer partner."})
            if partner is not None and partner.kind != Partner.Kind.SHOP:
                raise ValidationError({"customer": "Only an eCommerce shop's channel sends orders for a customer."})
        if self.signature_scheme == self.SignatureScheme.SHOPIFY:
            if self.format != self.Format.WEBHOOK:
                raise ValidationError({"signature_scheme": "Shopify signs webhooks: use the webhook format."})
            if partner is not None and partner.kind != Partner.Kind.SHOP:
                raise ValidationError({"signature_scheme": "Shopify webhooks come from an eCommerce shop partner."})
            if self.customer_id is None:
                raise ValidationError({"customer": "Name the customer whose orders this shop sends."})


class ChannelMappingVersion(models.Model):
    """One saved state of a channel's ``mapping_overrides``: who saved it, when, why, and what changed.

    Written only by ``apps.partners.services.channel_mapping_save``; never edited afterwards.
    """

    class Area(models.TextChoices):
        REFERENCES = "references", "References"
        FREIGHT = "freight", "Freight"
        FINANCIAL = "financial", "Financial posting"

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="mapping_versions")
    number = models.PositiveIntegerField()
    mapping = models.JSONField(default=dict, blank=True)
    changes = models.JSONField(
        default=list, blank=True, help_text='What changed from the version before: [{"path", "before", "after"}].'
    )
    areas = models.JSONField(
        default=list, blank=True, help_text="Sensitive areas the change touches: references, freight, financial."
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    author_name = models.CharField(max_length=150, blank=True, help_text="Kept when the account is deleted.")
    comment = models.CharField(max_length=500, blank=True)
    reverted_to = models.PositiveIntegerField(null=True, blank=True, help_text="The version this one restored.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["channel", "-number"]
        constraints = [models.UniqueConstraint(fields=["channel", "number"], name="unique_mapping_version")]

    def __str__(self) -> str:
        return f"{self.channel_id} mapping v{self.number}"


class ApiToken(models.Model):
    """A partner's API token. Only its hash is stored; the token itself is shown once."""

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What the token is for, e.g. 'ERP production'.")
    prefix = models.CharField(max_length=12, unique=True, editable=False)
    hashed = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)
    scopes = models.JSONField(
        null=True,
        blank=True,
        default=None,
        help_text="What this token may send: scope names from apps/partners/scopes.py. Left empty when "
        "created, it gets the partner kind's defaults; an empty list allows nothing.",
    )

    class Meta:
        ordering = ["partner__code", "-created_at"]

    def __str__(self) -> str:
        return f"{self.partner.code} {self.name} ({self.prefix}…)"

    def save(self, *args, **kwargs) -> None:
        if self.scopes is None:
            self.scopes = default_scopes(self.partner.kind)
        super().save(*args, **kwargs)

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def clean(self) -> None:
        validate_scopes(self.scopes)
