"""Onboarding a partner without code: a channel's mapping edited in admin, previewed on a sample,
saved as an audited version that messages processed afterwards (and dead letters replayed) read."""

import json

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from apps.exceptions.roles import ROLES, roles_ensure
from apps.ingest import mapping_admin
from apps.ingest.models import InboundMessage
from apps.ingest.services import message_process, message_receive, messages_replay
from apps.partners.models import Channel, ChannelMappingVersion, Partner
from apps.partners.services import MappingRefused, channel_mapping_revert, channel_mapping_save
from tests.factories import ChannelFactory, PartnerFactory, UserFactory

pytestmark = pytest.mark.django_db

SAMPLE = (
    "Tracking No,Status,Event Time\n1Z0001,delivered,2026-11-20T14:03:00+01:00\n1Z0002,ZU,2026-11-20T15:00:00+01:00\n"
)
MAPPED = {"csv": {"columns": {"tracking": "Tracking No", "status": "Status", "occurred_at": "Event Time"}}}
WITH_ZU = {"csv": {**MAPPED["csv"], "status_codes": {"ZU": "delivered"}}}


@pytest.fixture
def channel() -> Channel:
    carrier = PartnerFactory(code="DPDNL", kind=Partner.Kind.CARRIER)
    return ChannelFactory(partner=carrier, code="status-csv", format=Channel.Format.CSV, mapping_overrides=MAPPED)


def signed_in(persona: str) -> Client:
    if persona == "superuser":
        user = get_user_model().objects.create_superuser("root", "root@example.com", "x")
    else:
        user = UserFactory(is_staff=True, username=persona.lower().replace(" ", "-"))
        user.groups.add(roles_ensure()[persona])
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def integration_admin() -> Client:
    return signed_in("Integration Admin")


def page_url(channel: Channel) -> str:
    return reverse("admin:partners_channelmappingversion_channel", args=[channel.pk])


def revert_url(channel: Channel, number: int) -> str:
    return reverse("admin:partners_channelmappingversion_revert", args=[channel.pk, number])


def post(client: Client, channel: Channel, mapping: str, action: str, **more: object):
    data = {"mapping": mapping, "base_version": channel.mapping_version, "format": "auto", action: "1", **more}
    return client.post(page_url(channel), data, follow=True)


def text(response) -> str:
    return response.content.decode()


def text_of(mapping: dict) -> str:
    return json.dumps(mapping)


WITH_ZU_TEXT = (
    '{"csv": {"columns": {"tracking": "Tracking No", "status": "Status", "occurred_at": "Event Time"},'
    ' "status_codes": {"ZU": "delivered"}}}'
)


# --- saving: versions, authors, audit ---------------------------------------------------------


def test_saving_creates_a_version_with_its_author_and_comment(integration_admin, channel):
    response = post(integration_admin, channel, WITH_ZU_TEXT, "save", comment="DPD ticket 4411")

    channel.refresh_from_db()
    version = channel.mapping_versions.get()
    assert channel.mapping_overrides == WITH_ZU
    assert (channel.mapping_version, version.number) == (1, 1)
    assert version.author.username == version.author_name == "integration-admin"
    assert version.comment == "DPD ticket 4411"
    assert version.changes == [{"path": "csv.status_codes.ZU", "before": None, "after": "delivered"}]
    assert "Saved as version 1" in text(response)
    entry = LogEntry.objects.get(object_id=str(channel.pk))
    assert entry.user.username == "integration-admin"
    assert "Mapping version 1" in entry.change_message
    assert "csv.status_codes.ZU" in entry.change_message


def test_the_history_lists_who_changed_what_and_flags_references(integration_admin, channel):
    post(integration_admin, channel, WITH_ZU_TEXT, "save", comment="map ZU")
    channel.refresh_from_db()
    with_po = WITH_ZU_TEXT.replace('"Event Time"}', '"Event Time", "po": "Customer PO"}')
    post(integration_admin, channel, with_po, "save", comment="read the PO column")

    page = text(integration_admin.get(page_url(channel)))
    audit = text(integration_admin.get(reverse("admin:partners_channelmappingversion_changelist")))

    assert "read the PO column" in page
    assert "map ZU" in page
    assert "csv.columns.po" in page
    assert "Customer PO" in page
    assert '<span class="mapping-area">references</span>' in page
    assert page.count("integration-admin") >= 2
    assert [v.areas for v in ChannelMappingVersion.objects.order_by("number")] == [[], ["references"]]
    assert "references" in audit
    assert "integration-admin" in audit


def test_freight_and_invoice_kinds_are_flagged():
    edifact = ChannelFactory(format=Channel.Format.EDIFACT)
    version = channel_mapping_save(
        channel=edifact, mapping={"status_codes": {"99": "freight.charge_disputed"}}, author=None
    )
    assert version.areas == ["freight"]
    version = channel_mapping_save(channel=edifact, mapping={"status_codes": {"99": "invoice.held"}}, author=None)
    assert version.areas == ["freight", "financial"]  # from a freight kind to an invoice kind


@pytest.mark.parametrize(
    ("mapping", "problem"),
    [
        ('{"status_codes": {"ZU": "delivered"}}', "status_codes: unknown key; this channel reads csv"),
        (
            '{"csv": {"status_codes": {"ZU": "delivred"}}}',
            "csv.status_codes[&#x27;ZU&#x27;]: &#x27;delivred&#x27; is not",
        ),
        ('{"csv": {"feed": "invoices"}}', "csv.feed: &#x27;invoices&#x27; is not a CSV feed"),
        ('{"csv": {"columns": {"tracking": 7}}}', "csv.columns.tracking: expected text (required), found a number"),
        ('{"csv": {"delimiter": ";;"}}', "csv.delimiter: expected one character"),
        ("[1]", "Enter a JSON object"),
    ],
)
def test_an_invalid_mapping_is_refused_with_a_clear_message(integration_admin, channel, mapping, problem):
    response = post(integration_admin, channel, mapping, "save")

    assert problem in text(response)
    channel.refresh_from_db()
    assert channel.mapping_overrides == MAPPED
    assert not channel.mapping_versions.exists()


def test_an_x12_code_must_map_to_a_shipment_event_kind():
    x12 = ChannelFactory(format=Channel.Format.X12)
    with pytest.raises(MappingRefused) as refused:
        channel_mapping_save(channel=x12, mapping={"status_codes": {"XX": "order.picked"}}, author=None)
    assert refused.value.problems == [
        "status_codes['XX']: 'order.picked' is not a shipment event kind such as shipment.delivered"
    ]


def test_a_save_over_a_version_saved_meanwhile_is_refused(integration_admin, channel):
    stale = channel.mapping_version
    channel_mapping_save(channel=channel, mapping=WITH_ZU, author=None, comment="someone else")

    response = integration_admin.post(
        page_url(channel), {"mapping": "{}", "base_version": stale, "format": "auto", "save": "1"}
    )

    assert "was saved as version 1 while you edited version 0" in text(response)
    assert Channel.objects.get(pk=channel.pk).mapping_overrides == WITH_ZU


def test_an_unchanged_mapping_makes_no_version(integration_admin, channel):
    response = post(integration_admin, channel, text_of(MAPPED), "save")

    assert "unchanged: no new version" in text(response)
    assert not channel.mapping_versions.exists()


def test_restoring_a_version_saves_a_new_one(integration_admin, channel):
    post(integration_admin, channel, WITH_ZU_TEXT, "save")

    response = integration_admin.post(revert_url(channel, 1), follow=True)  # version 1 is current: nothing
    assert "already the current one" in text(response)
    channel_mapping_save(channel=channel, mapping=MAPPED, author=None, comment="dropped ZU")
    response = integration_admin.post(revert_url(channel, 1), follow=True)

    channel.refresh_from_db()
    assert channel.mapping_version == 3
    assert channel.mapping_overrides == WITH_ZU
    assert channel.mapping_versions.get(number=3).reverted_to == 1
    assert "Version 1 restored as version 3" in text(response)


def test_the_channel_page_saves_a_changed_mapping_as_a_version(integration_admin, channel):
    url = reverse("admin:partners_channel_change", args=[channel.pk])
    form = integration_admin.get(url).context["adminform"].form
    data = {bound.name: bound.value() for bound in form if bound.value() not in (None, False)}
    data.update(mapping_overrides=WITH_ZU_TEXT, active="on")

    integration_admin.post(url, data)

    channel.refresh_from_db()
    assert channel.mapping_overrides == WITH_ZU
    assert channel.mapping_versions.get().author_name == "integration-admin"


# --- preview -----------------------------------------------------------------------------------


def test_preview_shows_the_sample_with_the_current_and_the_edited_mapping(integration_admin, channel):
    response = post(integration_admin, channel, WITH_ZU_TEXT, "preview", sample_text=SAMPLE)

    comparison = response.context["comparison"]
    assert [row.before["kind"] for row in comparison.rows] == ["shipment.delivered", "shipment.status_unmapped"]
    assert [row.after["kind"] for row in comparison.rows] == ["shipment.delivered", "shipment.delivered"]
    assert [row.changed for row in comparison.rows] == [False, True]
    assert comparison.now_mapped == ["ZU"]
    page = text(response)
    assert "2 event(s), 1 changed" in page
    assert "Now mapped: <code>ZU</code>" in page
    assert not Channel.objects.get(pk=channel.pk).mapping_versions.exists()  # a preview saves nothing
    assert not InboundMessage.objects.exists()


def test_preview_names_what_is_not_mapped_and_how_to_map_it(integration_admin, channel):
    response = post(integration_admin, channel, text_of(MAPPED), "preview", sample_text=SAMPLE)

    page = text(response)
    assert "ZU: status column no table knows; map it with csv.status_codes {&quot;ZU&quot;: &lt;event kind&gt;}" in page


def test_preview_of_an_uploaded_file(integration_admin, channel):
    upload = SimpleUploadedFile("dpd.csv", SAMPLE.encode(), content_type="text/csv")
    response = post(integration_admin, channel, WITH_ZU_TEXT, "preview", sample_file=upload)

    assert response.context["comparison"].now_mapped == ["ZU"]


def test_a_hostile_sample_is_shown_as_text(integration_admin, channel):
    hostile = "Tracking No,Status,Event Time\n<script>alert(1)</script>,{{ 7|add:1 }},2026-11-20T14:03:00Z\n"
    response = post(integration_admin, channel, WITH_ZU_TEXT, "preview", sample_text=hostile)

    page = text(response)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "{{ 7|add:1 }}" in page  # echoed in the form as typed, never evaluated
    assert ">8<" not in page


def test_a_sample_over_the_limit_is_refused(integration_admin, channel, monkeypatch):
    monkeypatch.setattr(mapping_admin, "PREVIEW_MAX_BYTES", 100)
    response = post(integration_admin, channel, WITH_ZU_TEXT, "preview", sample_text=SAMPLE * 3)

    assert "the limit is 100." in text(response)
    assert response.context["comparison"] is None


def test_preview_without_a_sample_asks_for_one(integration_admin, channel):
    response = post(integration_admin, channel, WITH_ZU_TEXT, "preview")

    assert "Paste or upload a sample to preview." in text(response)


# --- what a saved mapping applies to ------------------------------------------------------------


def receive(channel: Channel, body: str) -> InboundMessage:
    message, _ = message_receive(
        body=body.encode(), source=InboundMessage.Source.FILE, partner=channel.partner, channel=channel, enqueue=False
    )
    message_process(message.pk)
    message.refresh_from_db()
    return message


def test_a_saved_mapping_applies_to_messages_received_after_it(channel):
    before = receive(channel, SAMPLE)
    channel_mapping_save(channel=channel, mapping=WITH_ZU, author=None)
    after = receive(channel, SAMPLE.replace("1Z0002", "1Z0003"))

    assert (before.unmapped_codes, before.mapping_version) == (["ZU"], 0)
    assert (after.unmapped_codes, after.mapping_version) == ([], 1)
    assert (before.unmapped_count, after.unmapped_count) == (1, 0)


def test_a_dead_letter_replayed_after_the_save_reads_the_new_version(channel, django_capture_on_commit_callbacks):
    german = "Sendungsnummer,Status,Zeit\n1Z0009,ZU,2026-11-20T15:00:00+01:00\n"
    dead = receive(channel, german)
    assert dead.status == InboundMessage.Status.DEAD
    assert "Sendungsnummer" in dead.error

    columns = {"tracking": "Sendungsnummer", "status": "Status", "occurred_at": "Zeit"}
    channel_mapping_save(
        channel=channel, mapping={"csv": {"columns": columns, "status_codes": {"ZU": "delivered"}}}, author=None
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert messages_replay([dead.pk]) == 1

    dead.refresh_from_db()
    assert dead.status == InboundMessage.Status.PROCESSED
    assert dead.mapping_version == 1
    assert dead.unmapped_codes == []


# --- who may ------------------------------------------------------------------------------------


@pytest.mark.parametrize("persona", [role for role in ROLES if role != "Integration Admin"])
def test_other_roles_get_403(persona, channel):
    client = signed_in(persona)
    channel_mapping_save(channel=channel, mapping=WITH_ZU, author=None)

    assert client.get(page_url(channel)).status_code == 403
    assert post(client, channel, "{}", "save").status_code == 403
    assert post(client, channel, WITH_ZU_TEXT, "preview", sample_text=SAMPLE).status_code == 403
    assert client.post(revert_url(channel, 1)).status_code == 403
    channel.refresh_from_db()
    assert (channel.mapping_version, channel.mapping_overrides) == (1, WITH_ZU)


def test_staff_who_may_change_channels_but_not_mappings_see_the_mapping_read_only(channel):
    user = UserFactory(is_staff=True, permissions=["partners.view_channel", "partners.change_channel"])
    client = Client()
    client.force_login(user)

    form = client.get(reverse("admin:partners_channel_change", args=[channel.pk])).context["adminform"].form

    assert "mapping_overrides" not in form.fields
    assert client.get(page_url(channel)).status_code == 403


def test_anonymous_visitors_go_to_the_login_page(client, channel):
    response = client.get(page_url(channel))

    assert response.status_code == 302
    assert "/login/" in response["Location"]


@pytest.mark.parametrize("persona", ["Integration Admin", "superuser"])
def test_integration_admins_and_superusers_may(persona, channel):
    assert signed_in(persona).get(page_url(channel)).status_code == 200


def test_reverting_to_a_version_of_another_channel_is_404(integration_admin, channel):
    other = ChannelFactory(format=Channel.Format.CSV)
    channel_mapping_save(channel=other, mapping=WITH_ZU, author=None)

    assert integration_admin.post(revert_url(channel, 1)).status_code == 404


def test_a_changed_channel_page_revert_is_refused_when_it_no_longer_validates(integration_admin):
    x12 = ChannelFactory(format=Channel.Format.X12)
    ChannelMappingVersion.objects.create(channel=x12, number=1, mapping={"bogus": 1})
    x12.mapping_version = 1
    x12.save()
    channel_mapping_save(channel=x12, mapping={}, author=None)

    with pytest.raises(MappingRefused):
        channel_mapping_revert(channel=x12, number=1, author=None)
    response = integration_admin.post(revert_url(x12, 1), follow=True)
    assert "cannot be restored: bogus: unknown key" in text(response)


@pytest.mark.parametrize("prefix", [7, "", "A-VERY-LONG-SHOP-PREFIX-"])
def test_a_shops_order_prefix_must_be_short_text(prefix):
    from apps.ingest.mapping import channel_mapping_problems

    assert channel_mapping_problems("webhook", {"order_prefix": prefix}) == [
        'order_prefix: expected a short text (at most 20 characters), such as "OUTDOOR-"'
    ]
    assert channel_mapping_problems("webhook", {"order_prefix": "OUTDOOR-"}) == []
