import pytest
from django.core.management import call_command

from apps.exceptions.roles import ROLES, roles_ensure
from apps.timeline.demo import demo_role_users_upsert

pytestmark = pytest.mark.django_db


def test_roles_grant_what_each_job_needs_and_no_more():
    groups = roles_ensure()
    perms = {name: {p.codename for p in group.permissions.all()} for name, group in groups.items()}
    assert set(perms) == set(ROLES)
    assert {"release_invoice", "trigger_invoice"} <= perms["Finance"]
    assert "replay_inboundmessage" in perms["Integration Admin"]
    assert "change_channel" in perms["Integration Admin"]
    for role in ("Customer Service", "Supply Chain", "Finance"):
        assert "replay_inboundmessage" not in perms[role]
        assert "change_channel" not in perms[role]
    for role in ("Customer Service", "Supply Chain", "Integration Admin"):
        assert "release_invoice" not in perms[role]


READ = {"view_partner", "view_channel", "view_order", "view_shipment", "view_milestone", "view_invoice"}
CASES = {"view_exceptioncase", "change_exceptioncase", "view_exceptionrule"}
LINKS = {"view_trackinglink", "add_trackinglink", "change_trackinglink"}
# Every grant, pinned: widening a role is a deliberate change here as well as in ROLES.
PINNED = {
    "Customer Service": READ | CASES | LINKS | {"view_invoice_amounts"},
    "Finance": READ
    | CASES
    | {
        "view_freightcharge",
        "release_invoice",
        "trigger_invoice",
        "view_invoicerule",
        "view_freight_amounts",
        "view_invoice_amounts",
        "view_sla_dashboard",
    },
    "Supply Chain": READ
    | CASES
    | {"view_inventoryposition", "change_exceptionrule", "view_freight_amounts", "view_sla_dashboard"},
    "Integration Admin": READ
    | CASES
    | LINKS
    | {
        "view_sla_dashboard",
        "view_inboundmessage",
        "post_inboundmessage",
        "replay_inboundmessage",
        "view_outboundmessage",
        "view_parkedevent",
        *(f"{action}_{model}" for action in ("view", "add", "change", "delete") for model in ("partner", "apitoken")),
        *(f"{action}_{model}" for action in ("add", "change", "delete") for model in ("channel", "ediidentifier")),
        "change_channel_mapping",
        "view_ediidentifier",
        *(f"{action}_subscription" for action in ("view", "add", "change", "delete")),
        "view_delivery",
        "view_deliveryattempt",
        "view_endpoint",
        "change_endpoint",
        "view_outboundevent",
        "replay_delivery",
        "view_customernotification",
        *(f"{action}_customernotificationsettings" for action in ("view", "add", "change")),
        *(f"{action}_notificationtemplate" for action in ("view", "add", "change")),
    },
}


def test_each_roles_permissions_are_pinned():
    assert {role: set(codenames) for role, codenames in ROLES.items()} == PINNED


def test_customer_service_never_issues_tokens_or_edits_partners():
    granted = {p.codename for p in roles_ensure()["Customer Service"].permissions.all()}
    assert not granted & {"add_apitoken", "change_apitoken", "change_partner", "add_partner", "change_channel"}


def test_roles_are_idempotent_and_restore_removed_permissions(capsys):
    group = roles_ensure()["Finance"]
    group.permissions.clear()
    call_command("roles")
    assert group.permissions.filter(codename="release_invoice").exists()
    assert "Finance:" in capsys.readouterr().out


def test_the_demo_has_one_login_per_role(client):
    users = demo_role_users_upsert(prefix="demo", password="pw-demo-123")
    assert [u.username for u in users] == ["demo-cs", "demo-finance", "demo-supply", "demo-integration"]
    finance = users[1]
    assert finance.has_perm("billing.release_invoice")
    assert not finance.has_perm("ingest.replay_inboundmessage")
    assert users[3].has_perm("ingest.replay_inboundmessage")
    assert client.login(username="demo-cs", password="pw-demo-123")
