"""At-risk cases are one per order now: the open ones about a shipment close, with a note on
their history, and the next detection opens one case for each order still at risk. Shipment
cases a person closed stop holding anything back."""

from django.db import migrations
from django.utils import timezone

NOTE = "At-risk cases are now one per order: the order's case, if it is still at risk, replaces this one."


def close_shipment_cases(apps, schema_editor):
    ExceptionCase = apps.get_model("exceptions", "ExceptionCase")
    CaseEvent = apps.get_model("exceptions", "CaseEvent")
    now = timezone.now()
    shipment_cases = ExceptionCase.objects.filter(rule__code="at_risk", subject_type="shipment")
    open_ids = list(shipment_cases.filter(status__in=["open", "acknowledged"]).values_list("id", flat=True))
    shipment_cases.filter(id__in=open_ids).update(
        status="resolved", resolution="auto", resolved_at=now, resolution_note=NOTE
    )
    CaseEvent.objects.bulk_create(
        [CaseEvent(case_id=pk, at=now, action="auto_closed", note=NOTE) for pk in open_ids], batch_size=1000
    )
    shipment_cases.filter(condition_cleared_at__isnull=True).exclude(resolution="auto").update(
        condition_cleared_at=now
    )


class Migration(migrations.Migration):
    dependencies = [("exceptions", "0008_shipped_without_stock_rule")]

    operations = [migrations.RunPython(close_shipment_cases, migrations.RunPython.noop)]
