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
