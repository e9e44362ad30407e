"""Notification templates cost bounded memory and time: refused at edit time when a filter would
pad or repeat without limit, stopped at render time past a size or a deadline."""

import time
import tracemalloc

import pytest
from django.urls import reverse

import apps.outbound.admin_customers  # noqa: F401 - registers the admin classes
from apps.outbound import notifications
from apps.outbound.models import NotificationTemplate
from apps.outbound.notifications import TemplateError, render_notification, sample_context, template_error
from apps.outbound.tests.test_admin_customers import template_form
from tests.factories import NotificationTemplateFactory

HUGE = [
    ("{{ customer_name|ljust:100000000 }}", "the argument of |ljust is too large (at most 200)"),
    ("{{ customer_name|rjust:300 }}", "the argument of |rjust is too large"),
    ("{{ customer_name|center:99999999 }}", "the argument of |center is too large"),
    ("{{ invoice_amount|floatformat:100000 }}", "the argument of |floatformat is too large"),
    ('{{ carrier|stringformat:"0900000d" }}', "the argument of |stringformat is too large"),
    ('{{ carrier|make_list|join:"' + "-" * 300 + '" }}', "the argument of |join is too large"),
    ("{% filter ljust:5000 %}x{% endfilter %}", "the argument of |ljust is too large"),
    ("{% if customer_name|center:99999 %}x{% endif %}", "the argument of |center is too large"),
    ("{% with a=customer_name|rjust:99999 %}{{ a }}{% endwith %}", "the argument of |rjust is too large"),
    # A width taken from the data would let a partner choose it: an order number of 999999999.
    ("{{ customer_name|ljust:order_number }}", "the argument of |ljust must be written in the template"),
    ("{% lorem 100000000 w %}", "the tag {% lorem %} is not available here"),
    ("x" * 20_001, "the template is 20,001 characters long; the limit is 20,000"),
]
LOOP = "{% for a in tracking_url %}{% for b in tracking_url %}{% for c in tracking_url %}"
NESTED_LOOPS = LOOP + "{{ a }}{{ b }}{{ c }}" + "{% endfor %}" * 3
SILENT_LOOPS = LOOP + "{% for d in tracking_url %}{% endfor %}" + "{% endfor %}" * 3


@pytest.mark.parametrize(("source", "error"), HUGE)
def test_a_template_that_pads_or_repeats_without_limit_is_refused(source, error):
    assert error in template_error(source)


@pytest.mark.parametrize(
    "source",
    [
        "{{ customer_name|ljust:40 }}|{{ order_number|rjust:20 }}",
        "{{ invoice_amount|floatformat:2 }} {{ currency }}",
        '{{ carrier|stringformat:"-30s" }}',
        '{{ order_number|make_list|join:" " }}',
    ],
)
def test_small_literal_widths_are_fine(source):
    assert template_error(source) is None


@pytest.mark.django_db
@pytest.mark.parametrize(("source", "error"), HUGE[:3])
def test_the_admin_refuses_such_a_template_with_the_reason(admin_client, source, error):
    response = admin_client.post(reverse("admin:outbound_notificationtemplate_add"), template_form(body=source))

    assert response.status_code == 200
    assert error in response.content.decode()
    assert not NotificationTemplate.objects.exists()


@pytest.mark.django_db
def test_a_template_saved_before_the_checks_is_refused_when_sending():
    template = NotificationTemplateFactory(subject="Hello", body=HUGE[0][0])

    tracemalloc.start()
    with pytest.raises(TemplateError, match="too large"):
        render_notification(template, sample_context())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    assert peak < 5 * 2**20


@pytest.mark.django_db
def test_output_is_capped_however_loops_multiply_it(monkeypatch):
    monkeypatch.setattr(notifications, "RENDER_SECONDS", 60)  # tracing memory slows rendering down
    template = NotificationTemplateFactory(subject="Hello", body=NESTED_LOOPS)

    tracemalloc.start()
    with pytest.raises(TemplateError, match="the template renders more than 100,000 characters"):
        render_notification(template, sample_context())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    assert peak < 20 * 2**20
    assert "renders more than 100,000 characters" in template_error(NESTED_LOOPS)


def test_a_render_that_writes_nothing_still_stops_at_the_deadline(monkeypatch):
    monkeypatch.setattr(notifications, "RENDER_SECONDS", 0.2)

    started = time.monotonic()
    error = template_error(SILENT_LOOPS)

    assert error == "rendering took more than 0.2 seconds and was stopped"
    assert time.monotonic() - started < 5
