"""Payload encoding and decoding with the process's own generated classes."""

from __future__ import annotations

import re

import pytest

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor._proto.examples.shop_pb2 import LineItem, Order, Step
from conveyor.core.payloads import decode_payload, encode_payload, message_class

BASIC = "conveyor.examples.BasicJob"


def test_round_trip_basic_job() -> None:
    message = BasicJob(name="hello", count=123)
    type_name, data = encode_payload(message, limit=1 << 20)
    assert type_name == BASIC
    assert data == message.SerializeToString()
    decoded = decode_payload(type_name, data)
    assert isinstance(decoded, BasicJob)
    assert decoded == message
    assert (decoded.name, decoded.count) == ("hello", 123)


def test_round_trip_empty_message() -> None:
    type_name, data = encode_payload(BasicJob(), limit=1)
    assert data == b""
    assert decode_payload(type_name, data) == BasicJob()


def test_round_trip_nested_messages() -> None:
    order = Order(order_id="o1", items=[LineItem(sku="a", quantity=2), LineItem(sku="b")])
    type_name, data = encode_payload(order, limit=1 << 20)
    assert type_name == "conveyor.examples.Order"
    decoded = decode_payload(type_name, data)
    assert decoded == order
    assert [item.sku for item in decoded.items] == ["a", "b"]  # type: ignore[attr-defined]

    tree = Step(name="root", children=[Step(name="c", children=[Step(name="gc")])])
    assert decode_payload(*encode_payload(tree, limit=1 << 20)) == tree


def test_message_class_is_the_generated_class() -> None:
    assert message_class(BASIC) is BasicJob


def test_encode_rejects_non_messages() -> None:
    with pytest.raises(conveyor.PayloadTypeError, match="not dict"):
        encode_payload({"name": "x"}, limit=100)


def test_encode_enforces_limit() -> None:
    with pytest.raises(conveyor.PayloadTooLarge, match="over the limit of 3"):
        encode_payload(BasicJob(name="abcdef"), limit=3)


def test_decode_unknown_type() -> None:
    with pytest.raises(conveyor.UnknownType, match=re.escape("no.such.Type")) as info:
        decode_payload("no.such.Type", b"")
    assert isinstance(info.value, LookupError)
    assert "import the module generated from its .proto" in str(info.value)


def test_unknown_type_is_not_a_package_name() -> None:
    with pytest.raises(conveyor.UnknownType):
        message_class("conveyor.examples")


@pytest.mark.parametrize(
    "garbage",
    [b"\x0a\xff", b"\xff\xff\xff\xff", b"\x12\x05ab"],
    ids=["truncated-string", "bad-tag", "truncated-length"],
)
def test_decode_garbage_bytes(garbage: bytes) -> None:
    with pytest.raises(
        conveyor.PayloadDecodeError, match=re.escape(f"does not decode as {BASIC}")
    ) as info:
        decode_payload(BASIC, garbage)
    assert isinstance(info.value, conveyor.PayloadError)
    assert isinstance(info.value, ValueError)


def test_job_payload_decodes() -> None:
    message = BasicJob(name="j", count=5)
    job = conveyor.Job(
        id="x",
        type=BASIC,
        queue=BASIC,
        state=conveyor.JobState.QUEUED,
        payload_bytes=message.SerializeToString(),
    )
    assert job.payload() == message
    unknown = job.replace(type="acme.Missing")
    with pytest.raises(conveyor.UnknownType):
        unknown.payload()
