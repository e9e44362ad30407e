import json
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.timeline.selectors import OrderTimeline, find_orders, order_timeline
from apps.timeline.serializers import timeline_data
from apps.timeline.templatetags.timeline_format import event_label, local_time, place, reference_label


class Command(BaseCommand):
    help = "Print the timeline of the order that any reference (order, PO, tracking, BOL, ...) resolves to."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("ref", help="Any reference: order, PO, shipment, tracking, BOL, PRO, invoice, RMA")
        parser.add_argument("--json", action="store_true", help="Print the timeline as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        ref = options["ref"]
        matches = find_orders(ref)
        if not matches:
            raise CommandError(f"No order found for {ref!r}.")
        if len(matches) > 1:
            candidates = "\n".join(
                f"  {m.order.number}  ({', '.join(f'{reference_label(x.kind)} {x.value}' for x in m.matches)})"
                for m in matches
            )
            raise CommandError(f"{len(matches)} orders match {ref!r}; use one of their references:\n{candidates}")
        timeline = order_timeline(matches[0].order.id)
        if timeline is None:
            raise CommandError(f"The order for {ref!r} disappeared while reading it.")
        if options["json"]:
            self.stdout.write(json.dumps(timeline_data(timeline), indent=2, ensure_ascii=False))
        else:
            self.stdout.write("\n".join(_text(timeline)))


def _time(value: datetime | None) -> str:
    return local_time(value) if value else "-"


def _text(timeline: OrderTimeline) -> list[str]:
    order = timeline.order
    flags = [label for flag, label in ((timeline.late, "LATE"), (timeline.at_risk, "AT RISK")) if flag]
    customer = order.customer.name if order.customer else "unknown customer"
    out = [
        f"Order {order.number} - {customer} - {order.get_stage_display()}"
        + (f"  [{', '.join(flags)}]" if flags else ""),
        f"Promised {_time(order.promised_at)}; amount {order.total_amount or '-'} {order.currency}; "
        f"invoiced {timeline.invoiced_amount or '-'}",
        "",
        "Timeline:",
    ]
    for milestone in timeline.milestones:
        source = milestone.source_partner.code if milestone.source_partner else "unknown source"
        if milestone.source_channel:
            source += f"/{milestone.source_channel.code}"
        refs = ", ".join(f"{reference_label(r['kind'])} {r['value']}" for r in milestone.references)
        where = place(milestone.location)
        out.append(f"  {_time(milestone.occurred_at)}  {event_label(milestone.kind)}  (from {source})")
        out.append(f"      {refs}" + (f"  @ {where}" if where else ""))
    if timeline.shipments:
        out += ["", "Shipments:"]
    for row in timeline.shipments:
        shipment = row.shipment
        carrier = shipment.carrier.code if shipment.carrier else "-"
        out.append(
            f"  {shipment.number}  carrier {carrier}  tracking {shipment.tracking_number or '-'}  "
            f"{shipment.get_status_display()}  ETA {_time(shipment.estimated_delivery_at)}"
            + ("  [AT RISK]" if row.at_risk else "")
        )
    for charge in timeline.freight_charges:
        out.append(f"  Freight {charge.number}: {charge.amount or '-'} {charge.currency} {charge.get_status_display()}")
    if timeline.invoices:
        out += ["", "Invoices:"]
    for invoice in timeline.invoices:
        held = f" ({invoice.hold_reason})" if invoice.hold_reason else ""
        out.append(
            f"  {invoice.number}: {invoice.amount or '-'} {invoice.currency} {invoice.get_status_display()}{held}"
        )
    if timeline.returns:
        out += ["", "Returns:"]
    for rma in timeline.returns:
        out.append(f"  {rma.number}: {rma.get_status_display()} (authorised {_time(rma.authorized_at)})")
    return out
