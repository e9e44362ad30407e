"""A warehouse's stock through `ingest --sync`: a CSV snapshot, then an X12 846 and a 947 move the
positions, and every inbound X12 group is acknowledged."""

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import call_command

from apps.ingest.models import InboundMessage, OutboundMessage
from apps.inventory.models import InventoryPosition
from apps.partners.models import Channel, EdiIdentifier, Partner

pytestmark = pytest.mark.django_db(transaction=True)

X12_DOCUMENTS = Path(__file__).parent.parent / "apps" / "ingest" / "tests" / "documents" / "x12"
CHICAGO_WINTER = timezone(timedelta(hours=-6))
CSV_SNAPSHOT = (
    "sku,qty,uom,snapshot_at\n"
    "SKU-RED-M,100,EA,2026-11-19T06:00:00-06:00\n"
    "SKU-GREEN-S,5,LB,2026-11-19T06:00:00-06:00\n"
    "SKU-BLACK-M,9,EA,2026-11-19T06:00:00-06:00\n"
)


@pytest.fixture
def northstar(db) -> Partner:
    partner = Partner.objects.create(
        code="NORTHSTAR", name="Northstar DC", kind=Partner.Kind.WAREHOUSE, time_zone="America/Chicago"
    )
    EdiIdentifier.objects.create(partner=partner, qualifier="01", value="061414583")
    # Its 846 splits one item by its own docks: both are this warehouse.
    Channel.objects.create(
        partner=partner,
        code="edi",
        format=Channel.Format.X12,
        mapping_overrides={"warehouses": {"CT-DC-EAST": "NORTHSTAR", "CT-DC-WEST": "NORTHSTAR"}},
    )
    Channel.objects.create(
        partner=partner, code="stock", format="csv", mapping_overrides={"csv": {"feed": "inventory_snapshot"}}
    )
    return partner


def positions() -> dict[str, tuple[str, str, datetime]]:
    return {
        p.sku: (f"{p.quantity.normalize():f}", p.uom, p.as_of)
        for p in InventoryPosition.objects.filter(warehouse__code="NORTHSTAR")
    }


def test_846_and_947_move_stock_positions_like_the_csv_snapshot(northstar, tmp_path, capsys):
    snapshot = tmp_path / "stock.csv"
    snapshot.write_text(CSV_SNAPSHOT)
    call_command("ingest", str(snapshot), "--partner", "NORTHSTAR", "--format", "csv", "--sync")
    before = datetime(2026, 11, 19, 6, 0, tzinfo=CHICAGO_WINTER)
    assert positions() == {
        "SKU-RED-M": ("100", "EA", before),
        "SKU-GREEN-S": ("5", "LB", before),
        "SKU-BLACK-M": ("9", "EA", before),
    }

    # No --partner: the 846 is known by its interchange sender id.
    call_command("ingest", str(X12_DOCUMENTS / "846_inventory_advice.edi"), "--sync")
    as_of = datetime(2026, 11, 20, 6, 0, tzinfo=CHICAGO_WINTER)
    assert positions() == {
        "SKU-RED-M": ("150", "EA", as_of),
        "VP-BLUE-L": ("14", "CA", as_of),
        "SKU-GREEN-S": ("7.5", "LB", as_of),
        "SKU-ORANGE-S": ("60", "EA", as_of),
        # Not in the 846: a snapshot speaks only for the items it lists.
        "SKU-BLACK-M": ("9", "EA", before),
    }
    advice = InboundMessage.objects.get(filename="846_inventory_advice.edi")
    assert (advice.partner.code, advice.channel.code, advice.format) == ("NORTHSTAR", "edi", "x12")
    assert advice.unmapped_codes == ["QTY01:ZZ"]
    assert any("SKU-PURPLE-XL" in warning for warning in advice.warnings)

    call_command("ingest", str(X12_DOCUMENTS / "947_adjustments.edi"), "--sync")
    adjusted = datetime(2026, 11, 21, tzinfo=CHICAGO_WINTER)
    assert positions() == {
        "SKU-RED-M": ("145", "EA", adjusted),  # 150, -3 counted, -2 damaged
        "VP-BLUE-L": ("14", "CA", as_of),  # put on hold: on hand unchanged
        "SKU-GREEN-S": ("17.5", "LB", adjusted),
        "SKU-ORANGE-S": ("64", "EA", adjusted),
        "SKU-BLACK-M": ("9", "EA", before),
    }
    assert InventoryPosition.objects.get(sku="SKU-RED-M").quantity == Decimal("145")

    # Each inbound X12 group is answered with a 997 (the 846's and the 947's own functional ids).
    acks = OutboundMessage.objects.filter(kind="997").order_by("inbound_id")
    assert [(ack.inbound.filename, ack.ack_status) for ack in acks] == [
        ("846_inventory_advice.edi", "accepted"),
        ("947_adjustments.edi", "accepted"),
    ]
    assert ["AK1*IB*4211~" in acks[0].body, "AK1*AW*4388~" in acks[1].body] == [True, True]
    assert "FAILED" not in capsys.readouterr().out
