"""The demo's receivers: what the seeded partners subscribe to, and who is e-mailed.

Set up after the demo's history is applied, so only what happens while the demo runs is
published: to outbox folders (no receiver is needed) and, for e-mails, the console.
"""

from apps.outbound.models import CustomerMilestone, CustomerNotificationSettings, Subscription
from apps.outbound.services import endpoint_of
from apps.partners.models import Channel, Partner

RECEIVERS = (
    # partner, channel, name, format, kinds, 997s
    (
        "ERP",
        "outbox",
        "ERP order-to-cash feed",
        Subscription.Format.JSON,
        ["order.*", "shipment.*", "invoice.*"],
        False,
    ),
    (
        "HARBORLINE",
        "edi-out",
        "Invoices and acknowledgments (X12)",
        Subscription.Format.X12,
        ["invoice.generated"],
        True,
    ),
)
E_MAILED = {"BERGMANN": "logistik@bergmann.example"}


def outbound_demo_upsert() -> int:
    """Create or update the demo's subscriptions and customer e-mail settings; returns the subscriptions."""
    partners = {p.code: p for p in Partner.objects.filter(code__in=[r[0] for r in RECEIVERS] + list(E_MAILED))}
    count = 0
    for code, channel_code, name, fmt, kinds, acknowledgments in RECEIVERS:
        if code not in partners:
            continue
        channel, _ = Channel.objects.update_or_create(
            partner=partners[code],
            code=channel_code,
            defaults={"name": name, "format": fmt, "direction": Channel.Direction.OUTBOUND},
        )
        subscription, _ = Subscription.objects.update_or_create(
            partner=partners[code],
            name=name,
            defaults={"channel": channel, "format": fmt, "event_kinds": kinds, "acknowledgments": acknowledgments},
        )
        endpoint_of(subscription)
        count += 1
    for code, recipients in E_MAILED.items():
        if code in partners:
            CustomerNotificationSettings.objects.update_or_create(
                customer=partners[code],
                defaults={
                    "recipients": recipients,
                    "milestones": [CustomerMilestone.SHIPPED, CustomerMilestone.DELIVERED],
                },
            )
    return count
