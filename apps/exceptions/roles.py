"""The roles people work in, as Django groups with their permissions.

Views check permissions, never group names, so an admin who moves a permission moves what a role
sees. An account with no role (and no superuser flag) reads nothing.

- Every role reads timelines (order page, search, orders API) and every queue, and works the
  cases of its own queue (``QUEUES_BY_ROLE``).
- Customer Service: tracking links for customers; invoice amounts (customers ask about them).
- Finance: releases holds and invoices by hand; freight and invoice amounts; the SLA dashboard
  (delivery-to-invoice lag, freight settlement).
- Supply Chain: the SLA dashboard (lags, OTIF, partners going bad); freight amounts (carrier cost
  is part of judging a carrier); edits exception rules.
- Integration Admin: integration health, message trace and replay, partners, channels, tokens,
  subscriptions and customer e-mails; the SLA dashboard (its data-quality figures). No amounts.
"""

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group, Permission
from django.db import transaction

READ = ["view_partner", "view_channel", "view_order", "view_shipment", "view_milestone", "view_invoice"]
WORK_CASES = ["view_exceptioncase", "change_exceptioncase", "view_exceptionrule"]
# Shareable, read-only tracking links to an order's timeline, handed to the customer.
SHARE_LINKS = ["view_trackinglink", "add_trackinglink", "change_trackinglink"]
DASHBOARD = "view_sla_dashboard"
FREIGHT_AMOUNTS = "view_freight_amounts"
INVOICE_AMOUNTS = "view_invoice_amounts"
ROLES: dict[str, list[str]] = {
    "Customer Service": [*READ, *WORK_CASES, *SHARE_LINKS, INVOICE_AMOUNTS],
    "Finance": [
        *READ,
        *WORK_CASES,
        "view_freightcharge",
        "release_invoice",
        "trigger_invoice",
        "view_invoicerule",
        FREIGHT_AMOUNTS,
        INVOICE_AMOUNTS,
        DASHBOARD,
    ],
    "Supply Chain": [*READ, *WORK_CASES, "view_inventoryposition", "change_exceptionrule", FREIGHT_AMOUNTS, DASHBOARD],
    "Integration Admin": [
        *READ,
        *WORK_CASES,
        DASHBOARD,
        "view_inboundmessage",
        "view_outboundmessage",
        "replay_inboundmessage",
        "post_inboundmessage",
        "view_parkedevent",
        *(
            f"{action}_{model}"
            for action in ("add", "change", "delete")
            for model in ("partner", "channel", "ediidentifier", "apitoken")
        ),
        "change_channel_mapping",  # versioned and audited: apps.partners.services.channel_mapping_save
        "view_apitoken",
        "view_ediidentifier",
        # Outbound: subscriptions, their delivery log, endpoints (breakers, concurrency), replaying dead deliveries.
        *(f"{action}_subscription" for action in ("view", "add", "change", "delete")),
        "view_delivery",
        "view_deliveryattempt",
        "view_endpoint",
        "change_endpoint",  # its max_in_flight; the breaker is closed by an action
        "view_outboundevent",
        "replay_delivery",
        # Customer e-mails: who is told about which milestones, and in which words.
        "view_customernotification",
        *(
            f"{action}_{model}"
            for action in ("view", "add", "change")
            for model in ("customernotificationsettings", "notificationtemplate")
        ),
        *SHARE_LINKS,
    ],
}
PROJECT_APPS = (
    "partners",
    "timeline",
    "billing",
    "ingest",
    "exceptions",
    "outbound",
    "dashboards",
    "inventory",
    "predictions",
)


@transaction.atomic
def roles_ensure() -> dict[str, Group]:
    """Create the role groups, or bring their permissions back to the definition."""
    wanted = {codename for codenames in ROLES.values() for codename in codenames}
    permissions = {
        p.codename: p for p in Permission.objects.filter(codename__in=wanted, content_type__app_label__in=PROJECT_APPS)
    }
    missing = wanted - set(permissions)
    if missing:
        raise LookupError(f"permissions not found (run migrate first): {', '.join(sorted(missing))}")
    groups = {}
    for name, codenames in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set([permissions[codename] for codename in codenames])
        groups[name] = group
    return groups


QUEUES_BY_ROLE = {
    "Customer Service": "customer_service",
    "Finance": "finance",
    "Supply Chain": "supply_chain",
    "Integration Admin": "integration",
}


def queues_of(user: AbstractBaseUser | AnonymousUser) -> set[str]:
    """The queues a person works: their roles' queues; a superuser works them all."""
    if not user.is_authenticated:
        return set()
    if user.is_superuser:
        return set(QUEUES_BY_ROLE.values())
    return {QUEUES_BY_ROLE[group.name] for group in user.groups.all() if group.name in QUEUES_BY_ROLE}
