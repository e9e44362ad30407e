"""Shopify webhook bodies in the shape of Shopify's Admin API (orders and fulfillments), and the
headers Shopify sends with them. Written for these tests; amounts and ids are made up."""

import json
import uuid
from typing import Any

from apps.ingest.webhooks import shopify_signature_for

SHOP_DOMAIN = "acme-outdoor.myshopify.com"


def order(name: str = "#1001", **fields: Any) -> dict[str, Any]:
    number = int("".join(ch for ch in name if ch.isdigit()) or 1001)
    return {
        "id": 5_600_000_000_000 + number,
        "admin_graphql_api_id": f"gid://shopify/Order/{5_600_000_000_000 + number}",
        "name": name,
        "order_number": number,
        "email": "jane@example.com",
        "created_at": "2026-11-20T09:15:02-05:00",
        "updated_at": "2026-11-20T09:15:04-05:00",
        "processed_at": "2026-11-20T09:15:02-05:00",
        "cancelled_at": None,
        "cancel_reason": None,
        "currency": "USD",
        "total_price": "64.85",
        "subtotal_price": "59.85",
        "financial_status": "paid",
        "fulfillment_status": None,
        "po_number": None,
        "note_attributes": [],
        "line_items": [
            {"id": 13_001, "variant_id": 44_001, "sku": "TENT-2P", "title": "Tent", "quantity": 1, "price": "39.95"},
            {"id": 13_002, "variant_id": 44_002, "sku": "PEG-10", "title": "Pegs", "quantity": 2, "price": "9.95"},
        ],
        "shipping_address": {"city": "Portland", "province_code": "OR", "country_code": "US", "zip": "97201"},
        **fields,
    }


def cancelled(name: str = "#1001", **fields: Any) -> dict[str, Any]:
    return order(
        name,
        cancelled_at="2026-11-20T11:02:00-05:00",
        cancel_reason="customer",
        updated_at="2026-11-20T11:02:01-05:00",
        financial_status="refunded",
        **fields,
    )


def fulfillment(order_name: str = "#1001", sequence: int = 1, **fields: Any) -> dict[str, Any]:
    number = int("".join(ch for ch in order_name if ch.isdigit()) or 1001)
    return {
        "id": 4_700_000_000 + number * 10 + sequence,
        "order_id": 5_600_000_000_000 + number,
        "name": f"{order_name}.{sequence}",
        "status": "success",
        "service": "manual",
        "created_at": "2026-11-21T10:00:00-05:00",
        "updated_at": "2026-11-21T10:00:00-05:00",
        "tracking_company": "UPS",
        "tracking_number": "1Z999AA10123456784",
        "tracking_numbers": ["1Z999AA10123456784"],
        "tracking_url": "https://www.ups.com/track?tracknum=1Z999AA10123456784",
        "tracking_urls": ["https://www.ups.com/track?tracknum=1Z999AA10123456784"],
        "shipment_status": None,
        "location_id": 905_684_977,
        "line_items": [
            {"id": 13_001, "variant_id": 44_001, "sku": "TENT-2P", "quantity": 1, "price": "39.95"},
            {"id": 13_002, "variant_id": 44_002, "sku": "PEG-10", "quantity": 2, "price": "9.95"},
        ],
        **fields,
    }


def as_body(resource: dict[str, Any]) -> bytes:
    """Minified, as Shopify sends it: the signature covers these exact bytes."""
    return json.dumps(resource, separators=(",", ":")).encode()


def headers(body: bytes, topic: str, secret: str, *, webhook_id: str | None = None) -> dict[str, str]:
    return {
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": shopify_signature_for(secret, body),
        "X-Shopify-Shop-Domain": SHOP_DOMAIN,
        "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
        "X-Shopify-Api-Version": "2025-01",
        "X-Shopify-Triggered-At": "2026-11-20T14:15:04.123Z",
    }
