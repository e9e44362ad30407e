"""Parser throughput on adversarial documents: seconds per MB and peak memory, per format and shape.

Each :class:`Shape` builds a document of about a given size aimed at one worst case of one parser:
thousands of tiny segments, one endless segment, short lines inside a segment, deep or wide JSON,
distinct unknown status codes, a large header under many statuses... The pipeline's work on it
(detect the format, find the EDI sender, parse) is what is measured; a parser may refuse a document
with a ParseError instead, as long as it does so quickly.

``tests/test_parsers_linear.py`` times every shape at n and 4n bytes and requires a ratio under 6;
``make bench`` reports seconds per MB from 1 MB up to ``INGEST_MAX_MESSAGE_BYTES``.
"""

import gc
import json
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from apps.ingest.parsers import ParseContext, ParseError, detect_format, get_parser, sender_ids

MB = 2**20
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
CONTEXT_TIME = datetime(2026, 11, 2, tzinfo=UTC)


@dataclass(frozen=True)
class Shape:
    name: str
    format: str
    build: Callable[[int], bytes]  # a document of about that many bytes
    mapping: dict[str, Any] = field(default_factory=dict)

    def process(self, body: bytes) -> str:
        """Detect, identify the sender and parse, as the pipeline does; a short outcome."""
        detect_format(body)
        sender_ids(self.format, body)
        context = ParseContext(partner="BENCH", channel="bench", mapping=self.mapping, received_at=CONTEXT_TIME)
        try:
            document = get_parser(self.format).parse(body, context)
        except ParseError as exc:
            return f"refused: {str(exc)[:80]}"
        return f"{len(document.events)} events"


def _repeat(
    head: str, unit: str | Callable[[int], str], tail: str, size: int, then: Callable[[int], str] | None = None
) -> str:
    """``head``, then ``unit(0)``, ``unit(1)``... (or ``unit`` again) until about ``size``
    characters, then ``tail``. With ``then``, ``unit`` fills the first half and ``then`` the second."""
    if then is not None:
        return _repeat(_repeat(head, unit, "", (size + len(head)) // 2), then, tail, size)
    if isinstance(unit, str):
        return head + unit * max(1, -(-(size - len(head) - len(tail)) // len(unit))) + tail
    parts, length, index = [head], len(head) + len(tail), 0
    while length < size:
        part = unit(index)
        parts.append(part)
        length += len(part)
        index += 1
    parts.append(tail)
    return "".join(parts)


def _stamp(index: int) -> str:
    return (T0 + timedelta(seconds=index)).isoformat()


# --- X12 -------------------------------------------------------------------------------------

ISA = "ISA*00*          *00*          *ZZ*BENCHSENDER    *ZZ*CTRLTOWER      *261101*0800*U*00401*000000001*0*P*>"


def _x12(
    body: str | Callable[[int], str],
    size: int,
    *,
    kind: str = "214",
    opening: str = "",
    end: str = "~",
    then: Callable[[int], str] | None = None,
) -> bytes:
    head = f"{ISA}{end}GS*QM*BENCHSENDER*CTRLTOWER*20261101*0800*1*X*004010{end}ST*{kind}*0001{end}{opening}"
    tail = f"SE*3*0001{end}GE*1*1{end}IEA*1*000000001{end}"
    return _repeat(head, body, tail, size, then).encode()


def _x12_status(terminator: str) -> Callable[[int], bytes]:
    def build(size: int) -> bytes:
        return _x12(f"K1*A{terminator}", size, opening=f"B10*PRO1*SH1*BNCH{terminator}", end=terminator)

    return build


def _x12_one_segment(unit: str) -> Callable[[int], bytes]:
    """One segment (a K1 remark) that never ends: ``unit`` again and again before its terminator."""

    def build(size: int) -> bytes:
        text = _x12(unit, size, opening="B10*PRO1*SH1*BNCH~K1*")
        return text.replace(b"SE*3", b"~SE*3", 1)

    return build


def _x12_many_sets(size: int) -> bytes:
    """Thousands of tiny sets of a type we do not read, each reported and acknowledged."""
    head = f"{ISA}~GS*SM*BENCHSENDER*CTRLTOWER*20261101*0800*1*X*004010~"
    return _repeat(head, lambda i: f"ST*204*{i}~B2**BNCH~SE*3*{i}~", "GE*1*1~IEA*1*000000001~", size).encode()


def _x12_many_interchanges(size: int) -> bytes:
    def unit(i: int) -> str:
        control = f"{i % 10**9:09d}"
        return (
            f"{ISA[:-13]}{control}*0*P*>~GS*QM*BENCHSENDER*CTRLTOWER*20261101*0800*{i}*X*004010~"
            f"ST*214*0001~B10*PRO{i}*SH{i}*BNCH~AT7*X6***20261101*0800~SE*4*0001~GE*1*{i}~IEA*1*{control}~\n"
        )

    return _repeat("", unit, "", size).encode()


X12_SHAPES = [
    Shape("x12: tiny segments", "x12", _x12_status("~")),
    Shape("x12: line break as terminator", "x12", _x12_status("\n")),
    Shape("x12: CRLF and indentation after each segment", "x12", _x12_status("~\r\n    ")),
    Shape("x12: short lines inside one segment", "x12", _x12_one_segment("A\n")),
    Shape("x12: blank lines inside one segment", "x12", _x12_one_segment("  \r\n")),
    Shape("x12: one segment of repeated separators", "x12", _x12_one_segment("*")),
    Shape("x12: one segment of component separators", "x12", _x12_one_segment(">")),
    Shape(
        "x12: 214 statuses with distinct unknown codes",
        "x12",
        lambda size: _x12(lambda i: f"AT7*Q{i}***20261101*0800~", size, opening="B10*PRO1*SH1*BNCH~L11*BOL1*BM~"),
    ),
    Shape(
        "x12: 214 LX loops",
        "x12",
        lambda size: _x12(
            lambda i: f"LX*{i}~AT7*X6***20261101*{i % 2400:04d}~MS1*CITY{i}*TX*US~", size, opening="B10*P*S*B~"
        ),
    ),
    Shape(
        "x12: 856 hierarchy nested item under item",
        "x12",
        lambda size: _x12(
            lambda i: f"HL*{i + 2}*{i + 1}*I~LIN**SK*S{i}~SN1**1*EA~",
            size,
            kind="856",
            opening="BSN*00*ASN1*20261101*0800~HL*1**S~",
        ),
    ),
    Shape(
        "x12: 856 levels without parents",
        "x12",
        lambda size: _x12(lambda i: f"HL*{i + 2}**I~", size, kind="856", opening="BSN*00*ASN1*20261101*0800~HL*1**S~"),
    ),
    Shape(
        "x12: 856 shipments under a large header",
        "x12",
        lambda size: _x12(
            lambda i: f"REF*2I*{i}~",
            size,
            kind="856",
            opening="BSN*00*ASN1*20261101*0800~",
            then=lambda i: f"HL*{i}**S~",
        ),
    ),
    Shape("x12: many unsupported sets", "x12", _x12_many_sets),
    Shape("x12: many interchanges", "x12", _x12_many_interchanges),
]


# --- EDIFACT ---------------------------------------------------------------------------------


def _edifact(
    body: str | Callable[[int], str],
    size: int,
    *,
    opening: str = "",
    end: str = "",
    then: Callable[[int], str] | None = None,
) -> bytes:
    head = (
        f"UNA:+.? 'UNB+UNOC:3+BENCHSENDER:ZZ+CTRLTOWER:ZZ+261101:0800+1'{end}UNH+1+IFTSTA:D:01B:UN'{end}"
        f"BGM+23+DOC1+9'{end}DTM+137:202611010800:203'{end}{opening}"
    )
    return _repeat(head, body, f"UNT+3+1'{end}UNZ+1+1'{end}", size, then).encode()


def _edifact_one_segment(unit: str) -> Callable[[int], bytes]:
    def build(size: int) -> bytes:
        return _edifact(unit, size, opening="CNI+1+SH1'STS+1+21'FTX+AAA+").replace(b"UNT+", b"'UNT+", 1)

    return build


def _edifact_many_messages(size: int) -> bytes:
    def unit(i: int) -> str:
        return f"UNH+{i}+IFTSTA:D:01B:UN'BGM+23+DOC{i}+9'CNI+1+SH{i}'STS+1+21'DTM+334:202611010800:203'UNT+6+{i}'\n"

    head = "UNA:+.? 'UNB+UNOC:3+BENCHSENDER:ZZ+CTRLTOWER:ZZ+261101:0800+1'\n"
    return _repeat(head, unit, "UNZ+1+1'\n", size).encode()


EDIFACT_SHAPES = [
    Shape("edifact: tiny segments", "edifact", lambda size: _edifact("FTX+A'", size)),
    Shape("edifact: CRLF after each segment", "edifact", lambda size: _edifact("FTX+A'\r\n", size, end="\r\n")),
    Shape("edifact: one segment of repeated separators", "edifact", _edifact_one_segment("+")),
    Shape("edifact: one segment of components", "edifact", _edifact_one_segment(":")),
    Shape("edifact: one segment of release characters", "edifact", _edifact_one_segment("??")),
    Shape("edifact: one segment of line breaks", "edifact", _edifact_one_segment("A\r\n")),
    Shape(
        "edifact: statuses with distinct unknown codes",
        "edifact",
        lambda size: _edifact(lambda i: f"STS+1+Q{i}'DTM+334:20261101{i % 2400:04d}:203'", size, opening="CNI+1+SH1'"),
    ),
    Shape(
        "edifact: undated statuses under a large header",
        "edifact",
        lambda size: _edifact(lambda i: f"RFF+BM:{i}'", size, then=lambda i: f"CNI+{i}+SH{i}'STS+1+21'"),
    ),
    Shape("edifact: many messages", "edifact", _edifact_many_messages),
]


# --- CSV -------------------------------------------------------------------------------------


def _csv(header: str, row: str | Callable[[int], str], size: int, tail: str = "") -> bytes:
    return _repeat(header, row, tail, size).encode()


def _csv_one_field(size: int) -> bytes:
    return _csv('tracking,status,occurred_at\nT1,delivered,"', "x,\n", size, '"\n')


CSV_SHAPES = [
    Shape(
        "csv: many short rows",
        "csv",
        lambda size: _csv("tracking,status,occurred_at\n", lambda i: f"T{i},delivered,{_stamp(i)}\n", size),
    ),
    Shape(
        "csv: distinct unknown statuses, CRLF",
        "csv",
        lambda size: _csv("tracking,status,occurred_at\r\n", lambda i: f"T{i},Q{i},{_stamp(i)}\r\n", size),
    ),
    Shape(
        "csv: blank and whitespace lines",
        "csv",
        lambda size: _csv("tracking,status,occurred_at\n", " , ,\n\n", size, f"T1,delivered,{_stamp(0)}\n"),
    ),
    Shape(
        "csv: bad rows",
        "csv",
        lambda size: _csv("tracking,status,occurred_at\n", lambda i: f"T{i},delivered,not a date {i}\n", size),
    ),
    Shape(
        "csv: wide rows",
        "csv",
        lambda size: _csv(
            "tracking,status,occurred_at," + ",".join(f"c{i}" for i in range(2000)) + "\n",
            lambda i: f"T{i},delivered,{_stamp(i)}" + "," * 2000 + "\n",
            size,
        ),
    ),
    Shape("csv: one endless quoted field", "csv", _csv_one_field),
    Shape(
        "csv: order release, one order with many lines",
        "csv",
        lambda size: _csv("order,sku,quantity,occurred_at\n", lambda i: f"SO1,S{i},1,{_stamp(0)}\n", size),
        mapping={"csv": {"feed": "order_release"}},
    ),
    Shape(
        "csv: inventory snapshot",
        "csv",
        lambda size: _csv("sku,quantity,occurred_at\n", lambda i: f"S{i},{i % 97},{_stamp(0)}\n", size),
        mapping={"csv": {"feed": "inventory_snapshot"}},
    ),
]


# --- JSON ------------------------------------------------------------------------------------


def _event(index: int, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"e{index}",
        "kind": "shipment.in_transit",
        "occurred_at": _stamp(index),
        "references": [{"kind": "tracking", "value": f"T{index}"}],
        **fields,
    }


def _json_list(item: Callable[[int], Any], size: int, separator: str = ",") -> bytes:
    return _repeat("[", lambda i: ("" if i == 0 else separator) + json.dumps(item(i)), "]", size).encode()


def _nested(size: int) -> str:
    depth = size // 6
    return '{"a":' * depth + "1" + "}" * depth


def _json_deep(size: int) -> bytes:
    return (json.dumps(_event(0))[:-1] + f', "attributes": {_nested(size)}}}').encode()


def _json_wide(size: int) -> bytes:
    head = json.dumps(_event(0))[:-1] + ', "attributes": {'
    return _repeat(head, lambda i: f'"k{i}":{i},', '"end":0}}', size).encode()


def _json_escapes(size: int) -> bytes:
    head = json.dumps(_event(0))[:-1] + ', "attributes": {"note": "'
    return _repeat(head, '\\u00e9\\n\\"', '"}}', size).encode()


def _json_references(size: int) -> bytes:
    head = json.dumps(_event(0))[:-2] + ", "
    return _repeat(head, lambda i: f'{{"kind":"order","value":"SO{i}"}},', '{"kind":"po","value":"P"}]}', size).encode()


MAPPING = {
    "json": {
        "items": "updates",
        "tracking_number": "parcel.number",
        "status": "state",
        "occurred_at": "at",
        "location": {"city": "where.city"},
    }
}

JSON_SHAPES = [
    Shape("json: many small events", "json", lambda size: _json_list(_event, size)),
    Shape(
        "json: whitespace between events", "json", lambda size: _json_list(_event, size, separator=" \r\n\t" * 16 + ",")
    ),
    Shape("json: deep nesting", "json", _json_deep),
    Shape("json: deep arrays", "json", lambda size: ("[" * (size // 2) + "]" * (size // 2)).encode()),
    Shape("json: wide attributes", "json", _json_wide),
    Shape("json: long escaped string", "json", _json_escapes),
    Shape("json: too many references", "json", _json_references),
    Shape(
        "json mapping: many items",
        "json_mapping",
        lambda size: (
            '{"updates": '
            + _json_list(
                lambda i: {"parcel": {"number": f"T{i}"}, "state": f"Q{i}", "at": _stamp(i), "where": {"city": "X"}},
                size,
            ).decode()
            + "}"
        ).encode(),
        mapping=MAPPING,
    ),
    Shape(
        "json mapping: deep nesting",
        "json_mapping",
        lambda size: f'{{"updates": [{{"parcel": {_nested(size)}}}]}}'.encode(),
        mapping=MAPPING,
    ),
]


# --- aggregators -----------------------------------------------------------------------------

# Per aggregator: a webhook body around a list of checkpoints, and one checkpoint with status code.
AGGREGATOR_BODIES: dict[str, tuple[Callable[[list[Any]], dict[str, Any]], Callable[[int, str], dict[str, Any]]]] = {
    "easypost": (
        lambda points: {
            "object": "Tracker",
            "tracking_code": "EZ1",
            "status": "in_transit",
            "carrier": "USPS",
            "tracking_details": points,
        },
        lambda i, code: {"status": code, "datetime": _stamp(i), "message": "scan"},
    ),
    "shipengine": (
        lambda points: {
            "resource_type": "API_TRACK",
            "data": {"tracking_number": "SE1", "status_code": "IT", "carrier_code": "ups", "events": points},
        },
        lambda i, code: {"occurred_at": _stamp(i), "status_code": code, "description": "scan"},
    ),
    "aftership": (
        lambda points: {"msg": {"tracking_number": "AS1", "tag": "InTransit", "slug": "dhl", "checkpoints": points}},
        lambda i, code: {"checkpoint_time": _stamp(i), "tag": code, "message": "scan"},
    ),
    "shippo": (
        lambda points: {
            "event": "track_updated",
            "data": {
                "tracking_number": "SH1",
                "carrier": "usps",
                "tracking_status": {"status": "TRANSIT", "status_date": _stamp(0)},
                "tracking_history": points,
            },
        },
        lambda i, code: {"status": code, "status_date": _stamp(i), "status_details": "scan"},
    ),
    "easyship": (
        lambda points: {
            "event_type": "shipment.tracking.checkpoints.created",
            "tracking_status": {"tracking_number": "ES1", "status": "Shipped", "checkpoints": points},
        },
        lambda i, code: {"checkpoint_time": _stamp(i), "primary_status": code, "order_number": i},
    ),
    "karrio": (
        lambda points: {
            "type": "tracker.updated",
            "data": {"tracking_number": "KA1", "status": "in_transit", "carrier_name": "dhl", "events": points},
        },
        lambda i, code: {"date": "2026-11-01", "time": f"{i % 24:02d}:{i % 60:02d}", "status": code},
    ),
}


def _checkpoints(name: str) -> Callable[[int], bytes]:
    """One tracker with ever more checkpoints, each with a status code no table knows."""
    wrap, point = AGGREGATOR_BODIES[name]

    def build(size: int) -> bytes:
        head, tail = json.dumps(wrap(["@"])).split('"@"')
        return _repeat(head, lambda i: ("," if i else "") + json.dumps(point(i, f"Q{i}")), tail, size).encode()

    return build


def _batch(name: str) -> Callable[[int], bytes]:
    """A list of webhook bodies, one tracker and one checkpoint each."""
    if name == "sendcloud":

        def body(i: int) -> dict[str, Any]:
            status = {"id": 1000 + i, "message": "scan"}
            parcel = {"tracking_number": f"SC{i}", "status": status, "carrier": {"code": "postnl"}}
            return {"action": "parcel_status_changed", "timestamp": 1793520000 + i, "parcel": parcel}

        return lambda size: _json_list(body, size)
    wrap, point = AGGREGATOR_BODIES[name]

    def one(i: int) -> dict[str, Any]:
        text = json.dumps(wrap([point(i, "in_transit")]))
        return json.loads(text.replace('1"', f'1-{i}"', 1))  # a tracking number of its own

    return lambda size: _json_list(one, size)


AGGREGATOR_SHAPES = [
    Shape(f"{name}: checkpoints with distinct unknown statuses", name, _checkpoints(name)) for name in AGGREGATOR_BODIES
] + [Shape(f"{name}: batch of webhooks", name, _batch(name)) for name in [*AGGREGATOR_BODIES, "sendcloud"]]

SHAPES = X12_SHAPES + EDIFACT_SHAPES + CSV_SHAPES + JSON_SHAPES + AGGREGATOR_SHAPES


# --- measuring -------------------------------------------------------------------------------


def seconds(
    shape: Shape, body: bytes, clock: Callable[[], float] = time.perf_counter, *, collect: bool = True
) -> float:
    """How long processing ``body`` takes; ``time.process_time`` counts this process's CPU alone.

    ``collect=False`` keeps the garbage collector off meanwhile: CPython's full collections come
    after so many allocations, which puts a step of their cost between two sizes of a document
    wherever the first one falls; without them a time ratio shows the parser's own work.
    """
    gc.collect()
    if not collect:
        gc.disable()
    try:
        started = clock()
        shape.process(body)
        return clock() - started
    finally:
        gc.enable()


def measure(shape: Shape, size: int) -> dict[str, Any]:
    """Seconds per MB and peak memory of the pipeline's parsing work on a ``size``-byte document."""
    body = shape.build(size)
    elapsed = seconds(shape, body)
    gc.collect()
    tracemalloc.start()
    outcome = shape.process(body)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {
        "case": shape.name,
        "megabytes": round(len(body) / MB, 2),
        "seconds": round(elapsed, 3),
        "seconds_per_mb": round(elapsed / (len(body) / MB), 3),
        "peak_memory_mb": round(peak / MB, 1),
        "outcome": outcome,
    }


def sizes(limit: int) -> list[int]:
    """1 MB, then four times more each step, up to the size limit."""
    found, size = [], MB
    while size < limit:
        found.append(size)
        size *= 4
    return [*found, limit]


def parser_cases(limit: int, *, max_seconds: float = 30.0, max_memory_mb: float = 1024.0) -> list[dict[str, Any]]:
    """Every shape at every size up to ``limit``; a shape stops growing when the next size would
    take more than ``max_seconds`` or ``max_memory_mb``, going by the last one."""
    rows = []
    for shape in SHAPES:
        steps = sizes(limit)
        for size, following in zip(steps, [*steps[1:], None], strict=True):
            row = measure(shape, size)
            rows.append(row)
            growth = following / size if following else 0
            if row["seconds"] * growth > max_seconds or row["peak_memory_mb"] * growth > max_memory_mb:
                break
    return rows
