"""The message trace: raw documents made readable, and one message followed through the pipeline."""

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from apps.dashboards.trace import (
    MAX_BODY_BYTES,
    csv_table,
    edifact_segments,
    message_trace,
    raw_view,
    x12_segments,
)
from apps.exceptions.models import ExceptionCase, ExceptionRule
from apps.exceptions.roles import roles_ensure
from apps.exceptions.services import builtin_rules_ensure, detect
from apps.ingest.models import InboundMessage
from apps.ingest.services import message_process, message_receive
from apps.partners.models import Channel, EdiIdentifier, Partner
from apps.timeline.events import parse_events
from apps.timeline.models import Milestone, Order
from apps.timeline.services import apply_events
from tests.factories import (
    InboundMessageFactory,
    MilestoneFactory,
    MilestoneReportFactory,
    OrderFactory,
    ShipmentFactory,
)

DOCUMENTS = Path(__file__).resolve().parents[2] / "ingest" / "tests" / "documents"
SHIP_NOTICE = (DOCUMENTS / "x12" / "856_sopi.edi").read_bytes()
UNKNOWN_SENDER = SHIP_NOTICE.replace(b"ACMEWMS        ", b"NOBODYWMS      ").replace(b"*ACMEWMS*", b"*NOBODYWMS*")


def create_the_notices_orders() -> None:
    """The orders the ship notice ships: a warehouse's notice is judged against them (released to
    it, or to no named warehouse); without them it waits for them."""
    apply_events(
        parse_events(
            [
                {
                    "event_id": f"created-{po}",
                    "kind": "order.created",
                    "occurred_at": "2026-11-15T08:00:00+00:00",
                    "references": [{"kind": "po", "value": po}],
                }
                for po in ("PO-77001", "PO-77002")
            ]
        )
    )


def labelled(segment) -> dict[str, str]:
    return {element.label: element.value for element in segment.elements}


def text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


# --- raw documents, without a database ---------------------------------------------------------


def test_x12_is_split_into_segments_with_element_positions():
    segmented = x12_segments(SHIP_NOTICE.decode())

    assert segmented.delimiters == "element '*', component '>', segment '~'"
    isa, gs, st, bsn = segmented.segments[:4]
    assert (isa.number, isa.tag, labelled(isa)["ISA16"], labelled(isa)["ISA13"]) == (1, "ISA", ">", "000000101")
    assert (bsn.number, bsn.tag) == (4, "BSN")
    assert labelled(bsn) == {"BSN01": "00", "BSN02": "SHP-5001", "BSN03": "20261120", "BSN04": "1400", "BSN05": "0001"}
    hl = segmented.segments[4]
    assert labelled(hl) == {"HL01": "1", "HL03": "S"}  # an empty HL02 keeps HL03 in its place
    assert segmented.segments[-1].tag == "IEA"
    assert len(segmented.segments) == 38


def test_x12_separators_come_from_the_isa_header():
    pipes = (DOCUMENTS / "x12" / "214_pipe_lines.edi").read_text()
    segmented = x12_segments(pipes)
    assert segmented.delimiters == "element '|', component ':', segment line break"
    b10 = segmented.segments[3]
    assert labelled(b10) == {"B1001": "PRO-445566", "B1002": "SHP-5001", "B1003": "SAIA"}

    custom = SHIP_NOTICE.decode().replace("*", "^").replace("~", "!\r\n")
    segmented = x12_segments(custom)
    assert segmented.delimiters == "element '^', component '>', segment '!'"
    assert labelled(segmented.segments[3])["BSN02"] == "SHP-5001"


def test_x12_wrapped_at_80_columns_still_reads_one_segment_per_line():
    stream = SHIP_NOTICE.decode().replace("\n", "")
    wrapped = "\n".join(stream[i : i + 80] for i in range(0, len(stream), 80))
    segments = x12_segments(wrapped).segments
    assert [s.tag for s in segments[:4]] == ["ISA", "GS", "ST", "BSN"]
    assert labelled(segments[3])["BSN02"] == "SHP-5001"


def test_not_x12_is_not_split():
    assert x12_segments("hello, world") is None
    assert x12_segments("ISA*00*truncated") is None


def test_edifact_honours_the_una_and_its_release_character():
    document = (DOCUMENTS / "edifact" / "iftsta_custom_delimiters.edi").read_text()
    segmented = edifact_segments(document)

    assert segmented.delimiters == "component '|', element '*', release '#', segment '~'"
    by_tag = {}
    for segment in segmented.segments:
        by_tag.setdefault(segment.tag, labelled(segment))
    assert by_tag["UNB"]["UNB05"] == "77*01"  # a released element separator
    assert by_tag["BGM"]["BGM02"] == "STAT~001"  # a released terminator does not end the segment
    assert by_tag["RFF"] == {"RFF01.1": "BM", "RFF01.2": "BL|9"}
    assert by_tag["DTM"] == {"DTM01.1": "334", "DTM01.2": "202611200915", "DTM01.3": "203"}
    assert by_tag["FTX"]["FTX04"] == "Left depot #4 at 09|15"
    assert [s.number for s in segmented.segments] == list(range(1, 13))


def test_edifact_default_delimiters_and_question_mark_release():
    document = "UNB+UNOA:3+SENDER+RECEIVER+261120:0930+1'\nFTX+AAI+++Price ?+ tax?'s?:ok'\nUNZ+1+1'"
    segmented = edifact_segments(document)
    assert segmented.delimiters == "component ':', element '+', release '?', segment \"'\""
    ftx = segmented.segments[1]
    assert (ftx.number, ftx.tag, labelled(ftx)["FTX04"]) == (2, "FTX", "Price + tax's:ok")
    assert labelled(segmented.segments[0])["UNB02"] == "SENDER"


def test_json_is_pretty_printed():
    view = raw_view(b'{"events":[{"kind":"order.created","references":[]}]}', "json")
    assert view.layout == "json"
    assert view.text == json.dumps({"events": [{"kind": "order.created", "references": []}]}, indent=2)


def test_csv_is_a_table_capped_with_a_note():
    body = "tracking;status\n" + "".join(f"1Z{n};D1\n" for n in range(12))
    assert csv_table(body, limit=10).header == ["tracking", "status"]
    assert (len(csv_table(body, limit=10).rows), csv_table(body, limit=10).more) == (10, 2)

    view = raw_view(body.encode() * 100, "csv")
    assert view.layout == "table"
    assert view.table.rows[0] == ["1Z0", "D1"]
    assert view.notes == ["Showing the first 500 rows; 799 more not shown."]


def test_anything_else_is_text_and_large_bodies_are_capped():
    assert raw_view(b"just some words", "json_mapping").layout == "text"
    view = raw_view(b"x" * (MAX_BODY_BYTES + 10), "auto")
    assert (view.layout, len(view.text)) == ("text", MAX_BODY_BYTES)
    assert view.notes == [f"The message is {MAX_BODY_BYTES + 10:,} bytes; showing the first {MAX_BODY_BYTES:,}."]


def test_a_utf8_character_cut_by_the_cap_is_dropped_not_garbled():
    body = b"a" * (MAX_BODY_BYTES - 1) + "é".encode()
    assert raw_view(body, "auto").text == "a" * (MAX_BODY_BYTES - 1)


# --- one message through the real pipeline -----------------------------------------------------


@pytest.fixture
def warehouse(db) -> Partner:
    partner = Partner.objects.create(code="ACME", name="Acme Warehouse", kind=Partner.Kind.WAREHOUSE)
    EdiIdentifier.objects.create(partner=partner, qualifier="ZZ", value="ACMEWMS")
    Channel.objects.create(partner=partner, code="edi", name="Acme EDI", format=Channel.Format.X12)
    return partner


@pytest.fixture
def integration_admin(client, django_user_model):
    user = django_user_model.objects.create_user("integration")
    user.groups.add(roles_ensure()["Integration Admin"])
    client.force_login(user)
    return user


def ingest(body: bytes, partner: Partner | None = None) -> InboundMessage:
    """Store and process a file as the inbox would; the sender is found from its EDI ids if not given."""
    message, _ = message_receive(
        body=body, source=InboundMessage.Source.FILE, partner=partner, filename="asn.edi", enqueue=False
    )
    message_process(message.pk)
    message.refresh_from_db()
    return message


def order_created(number: str) -> None:
    at = (timezone.now() - timedelta(days=2)).isoformat()
    event = {"event_id": f"{number}-c", "kind": "order.created", "occurred_at": at}
    apply_events(parse_events([{**event, "references": [{"kind": "order", "value": number}]}]))


@pytest.fixture
def ship_notice(warehouse) -> InboundMessage:
    order_created("SO-1001")
    message = ingest(SHIP_NOTICE)
    assert message.status == InboundMessage.Status.PROCESSED
    return message


def test_a_processed_ship_notice_shows_its_segments_events_milestones_and_997(client, integration_admin, ship_notice):
    response = client.get(reverse("message-trace", args=[ship_notice.pk]))

    assert response.status_code == 200
    page = text(response)
    assert f"Message #{ship_notice.pk}" in page
    assert "Acme Warehouse (ACME)" in page
    assert "Acme EDI" in page
    assert "asn.edi" in page
    assert "Delimiters: element &#x27;*&#x27;, component &#x27;&gt;&#x27;, segment &#x27;~&#x27;." in page
    assert re.search(r'BSN02</span> <code class="element-value">SHP-5001</code>', page)

    parsed = response.context["trace"].parsed
    assert parsed.error == ""
    assert {e.kind for e in parsed.events} >= {"shipment.manifested"}
    assert "Shipment manifested" in page

    order = Order.objects.get(number="SO-1001")
    milestones = Milestone.objects.filter(source_message_id=ship_notice.pk)
    assert milestones.exists()
    assert {m.event_id for m in milestones} <= {e.event_id for e in parsed.events}
    assert f'href="{reverse("order-detail", args=[order.pk])}">SO-1001</a>' in page

    [ack] = response.context["trace"].acknowledgments
    assert (ack.acknowledgment.kind, ack.acknowledgment.ack_status) == ("997", "accepted")
    assert [s.tag for s in ack.segmented.segments][:4] == ["ISA", "GS", "ST", "AK1"]
    assert re.search(r'AK101</span> <code class="element-value">SH</code>', page)
    assert "Replay" not in page  # processed: nothing to replay


def test_cases_around_the_message_are_marked_by_time_honestly(client, integration_admin, ship_notice):
    order = Order.objects.get(number="SO-1001")
    rule = ExceptionRule.objects.create(code="late_against_promise", title="Late against promise", queue="finance")
    at_risk = ExceptionRule.objects.create(code="at_risk", title="At risk", queue="customer_service")
    done = ship_notice.processed_at

    def case(summary: str, opened: timedelta, resolved: timedelta | None = None, *, rule=rule) -> ExceptionCase:
        return ExceptionCase.objects.create(
            rule=rule,
            queue=rule.queue,
            severity=rule.severity,
            subject_type="order",
            subject_id=order.pk,
            order=order,
            summary=summary,
            opened_at=done + opened,
            due_at=done + opened + timedelta(days=1),
            status="resolved" if resolved else "open",
            resolved_at=done + resolved if resolved else None,
        )

    before = case("Opened long before", -timedelta(days=1))
    after = case("Opened after", timedelta(minutes=1), rule=at_risk)
    closed = case("Closed after", -timedelta(hours=5), resolved=timedelta(minutes=2))
    elsewhere = ExceptionCase.objects.create(
        rule=rule,
        queue=rule.queue,
        severity=rule.severity,
        subject_type="order",
        subject_id=OrderFactory().pk,
        summary="Another order",
        opened_at=done,
        due_at=done,
    )

    response = client.get(reverse("message-trace", args=[ship_notice.pk]))

    rows = {row.case.pk: row for row in response.context["trace"].cases}
    assert elsewhere.pk not in rows
    assert (rows[before.pk].opened_after, rows[before.pk].closed_after) == (False, False)
    assert (rows[after.pk].opened_after, rows[after.pk].closed_after) == (True, False)
    assert (rows[closed.pk].opened_after, rows[closed.pk].closed_after) == (False, True)
    page = text(response)
    assert "opened after this message" in page
    assert "closed after this message" in page
    assert "same order or shipment" in page
    assert "related by subject and time" in page


def test_a_dead_letter_shows_its_error_segments_and_its_case(client, integration_admin, warehouse):
    message = ingest(UNKNOWN_SENDER)
    assert message.status == InboundMessage.Status.DEAD
    builtin_rules_ensure()
    detect()

    response = client.get(reverse("message-trace", args=[message.pk]))

    page = text(response)
    assert 'id="message-status">Dead letter</span>' in page
    assert "unknown sender ZZ:NOBODYWMS" in page
    assert re.search(r'ISA06</span> <code class="element-value">NOBODYWMS\s*</code>', page)
    assert response.context["trace"].parsed.error.startswith("unknown sender ZZ:NOBODYWMS")
    [row] = response.context["trace"].cases
    assert row.about_message
    assert row.case.rule.code == "dead_letter"
    assert "about this message" in page
    assert "No acknowledgment was sent" in page
    assert "Replay</button>" in page


def test_a_truncated_interchange_is_shown_as_text_with_the_parse_error(client, integration_admin, warehouse):
    message = ingest(SHIP_NOTICE[:60], partner=warehouse)
    assert message.status == InboundMessage.Status.DEAD

    response = client.get(reverse("message-trace", args=[message.pk]))

    trace = response.context["trace"]
    assert trace.raw.layout == "text"
    assert "truncated ISA" in message.error
    page = text(response)
    assert f"<pre>{escape(message.error)}</pre>" in page  # the stored error
    assert f'<p class="error" id="parse-error">{escape(message.error)}</p>' in page  # the same, parsed again


def test_replay_needs_the_permission_and_works_once_the_cause_is_fixed(
    client, django_user_model, warehouse, django_capture_on_commit_callbacks
):
    message = ingest(UNKNOWN_SENDER)
    trace_url = reverse("message-trace", args=[message.pk])
    reader = django_user_model.objects.create_user("reader")
    reader.user_permissions.add(Permission.objects.get(codename="view_inboundmessage"))
    client.force_login(reader)
    assert "Replay</button>" not in text(client.get(trace_url))
    assert client.post(reverse("messages-replay"), {"ids": [message.pk]}).status_code == 403

    admin = django_user_model.objects.create_user("integration")
    admin.groups.add(roles_ensure()["Integration Admin"])
    client.force_login(admin)
    EdiIdentifier.objects.create(partner=warehouse, qualifier="ZZ", value="NOBODYWMS")
    create_the_notices_orders()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("messages-replay"), {"ids": [message.pk], "next": trace_url}, follow=True)

    assert response.redirect_chain == [(trace_url, 302)]
    assert "1 message queued for replay." in text(response)
    message.refresh_from_db()
    assert message.status == InboundMessage.Status.PROCESSED
    assert Milestone.objects.filter(source_message_id=message.pk).exists()


def test_people_without_the_permission_get_403(client, django_user_model, ship_notice):
    url = reverse("message-trace", args=[ship_notice.pk])
    assert client.get(url).status_code == 302  # to the login page
    cs = django_user_model.objects.create_user("cs")
    cs.groups.add(roles_ensure()["Customer Service"])
    client.force_login(cs)
    assert client.get(url).status_code == 403


def test_an_unknown_message_is_404(client, integration_admin):
    assert client.get(reverse("message-trace", args=[999999])).status_code == 404


def test_json_and_escaped_text_on_the_page(client, integration_admin):
    json_message = InboundMessageFactory(body=b'{"kind":"order.created","x":"<b>"}', format="json")
    page = text(client.get(reverse("message-trace", args=[json_message.pk])))
    assert "{ &quot;kind&quot;: &quot;order.created&quot;, &quot;x&quot;: &quot;&lt;b&gt;&quot; }" in page

    text_message = InboundMessageFactory(body=b"<script>alert(1)</script>", format="auto")
    page = text(client.get(reverse("message-trace", args=[text_message.pk])))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert" not in page
    assert "could not tell the format" in page  # the parse error is shown, not raised


# --- links to the trace ------------------------------------------------------------------------


def test_the_timeline_links_each_sourced_milestone_to_its_trace(client, integration_admin, ship_notice):
    order = Order.objects.get(number="SO-1001")
    url = reverse("message-trace", args=[ship_notice.pk])
    assert f'href="{url}"' in client.get(reverse("order-detail", args=[order.pk])).content.decode()

    cs = integration_admin.__class__.objects.create_user("cs")
    cs.groups.add(roles_ensure()["Customer Service"])
    client.force_login(cs)
    assert f'href="{url}"' not in client.get(reverse("order-detail", args=[order.pk])).content.decode()


def test_a_dead_letter_case_links_to_its_trace(client, integration_admin, warehouse):
    message = ingest(UNKNOWN_SENDER)
    builtin_rules_ensure()
    detect()
    case = ExceptionCase.objects.get(subject_type="message", subject_id=message.pk)
    url = reverse("message-trace", args=[message.pk])

    assert f'href="{url}"' in client.get(reverse("case-detail", args=[case.pk])).content.decode()
    assert f'href="{url}"' in client.get(reverse("case-queue", args=["integration"])).content.decode()


# --- a constant number of queries ---------------------------------------------------------------


def _trace_queries(client, message_id: int) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(reverse("message-trace", args=[message_id])).status_code == 200
    return len(queries)


def test_the_trace_page_costs_the_same_queries_for_one_milestone_or_many(
    client, integration_admin, ship_notice, django_assert_max_num_queries
):
    few = InboundMessageFactory(format="json")
    MilestoneFactory(source_message_id=few.pk)
    MilestoneFactory(source_message_id=few.pk, shipment=ShipmentFactory(orders=[OrderFactory()]))
    MilestoneReportFactory(source_message_id=few.pk, milestone__shipment=ShipmentFactory(orders=[OrderFactory()]))
    baseline = _trace_queries(client, few.pk)

    many = InboundMessageFactory(format="json")
    for _ in range(8):
        MilestoneFactory(source_message_id=many.pk)
        shipment = ShipmentFactory(orders=[OrderFactory(), OrderFactory()])
        MilestoneFactory(source_message_id=many.pk, shipment=shipment)
        MilestoneReportFactory(source_message_id=many.pk, milestone__shipment=ShipmentFactory())
    with django_assert_max_num_queries(baseline):
        response = client.get(reverse("message-trace", args=[many.pk]))
    assert len(response.context["trace"].milestones) == 24
    assert message_trace(many.pk).milestones[8].orders  # a shipment's orders are linked
