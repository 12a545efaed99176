"""Descriptor sets and the TypeRegistry that decodes payloads without user code."""

from __future__ import annotations

import json
import re

import pytest
from google.protobuf import descriptor_pb2

import conveyor
from conveyor._proto.conveyor.v1 import job_pb2
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor._proto.examples.shop_pb2 import LineItem, Order, Step
from conveyor.core.type_registry import TypeRegistry, descriptor_set

BASIC = "conveyor.examples.BasicJob"


def registry_of(*types: type) -> TypeRegistry:
    return TypeRegistry({t.DESCRIPTOR.full_name: descriptor_set(t) for t in types})


def test_descriptor_set_is_a_file_descriptor_set() -> None:
    fds = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set(BasicJob))
    assert [f.name for f in fds.file] == ["examples/basic.proto"]
    assert [m.name for m in fds.file[0].message_type] == ["BasicJob"]


def test_descriptor_set_includes_imports_first() -> None:
    fds = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set(job_pb2.Job))
    names = [f.name for f in fds.file]
    assert names == ["google/protobuf/timestamp.proto", "conveyor/v1/job.proto"]


def test_decode_to_dict_uses_protobuf_json_mapping() -> None:
    registry = registry_of(BasicJob)
    data = BasicJob(name="hello", count=123).SerializeToString()
    assert registry.to_dict(BASIC, data) == {"name": "hello", "count": "123"}


def test_default_values_are_omitted() -> None:
    assert registry_of(BasicJob).to_dict(BASIC, b"") == {}


def test_from_json_builds_the_same_bytes() -> None:
    registry = registry_of(BasicJob)
    expected = BasicJob(name="hello", count=123).SerializeToString()
    assert registry.from_json(BASIC, '{"name": "hello", "count": "123"}') == expected
    assert registry.from_json(BASIC, '{"name": "hello", "count": 123}') == expected
    assert registry.from_json(BASIC, {"name": "hello", "count": 123}) == expected


def test_registry_classes_are_private() -> None:
    registry = registry_of(BasicJob)
    cls = registry.message_class(BASIC)
    assert cls is not BasicJob
    assert cls.DESCRIPTOR.full_name == BASIC
    # the private class parses bytes written by the generated one
    message = cls.FromString(BasicJob(name="n").SerializeToString())
    assert message.name == "n"  # type: ignore[attr-defined]


def test_nested_message_list_round_trip() -> None:
    registry = registry_of(Order)
    order = Order(
        order_id="o-1",
        items=[LineItem(order_id="o-1", sku="a", quantity=2), LineItem(sku="b", quantity=1)],
    )
    as_dict = registry.to_dict("conveyor.examples.Order", order.SerializeToString())
    assert as_dict == {
        "order_id": "o-1",
        "items": [
            {"order_id": "o-1", "sku": "a", "quantity": 2},
            {"sku": "b", "quantity": 1},
        ],
    }
    assert registry.from_json("conveyor.examples.Order", json.dumps(as_dict)) == (
        order.SerializeToString()
    )


def test_recursive_message_round_trip() -> None:
    registry = registry_of(Step)
    tree = Step(
        name="root",
        sleep_seconds=0.5,
        children=[Step(name="child", fail_times=2, children=[Step(name="grandchild")])],
        heirs=[Step(name="heir", settled_heir=True)],
    )
    as_dict = registry.to_dict("conveyor.examples.Step", tree.SerializeToString())
    assert as_dict["children"][0]["children"][0] == {"name": "grandchild"}
    assert as_dict["heirs"] == [{"name": "heir", "settled_heir": True}]
    assert as_dict["sleep_seconds"] == 0.5
    rebuilt = registry.from_json("conveyor.examples.Step", as_dict)
    assert Step.FromString(rebuilt) == tree


def test_message_with_imported_types() -> None:
    registry = registry_of(job_pb2.Job)
    envelope = job_pb2.Job(id="j1", type=BASIC, attempt=2)
    envelope.run_at.FromSeconds(0)
    as_dict = registry.to_dict("conveyor.v1.Job", envelope.SerializeToString())
    assert as_dict == {
        "id": "j1",
        "type": BASIC,
        "attempt": 2,
        "run_at": "1970-01-01T00:00:00Z",
    }


def test_names_lists_every_loaded_type() -> None:
    assert registry_of(BasicJob).names() == [BASIC]
    shop = registry_of(Order)
    assert shop.names() == [
        "conveyor.examples.Charge",
        "conveyor.examples.LineItem",
        "conveyor.examples.Order",
        "conveyor.examples.Reserve",
        "conveyor.examples.Step",
        "conveyor.examples.Summary",
    ]
    assert "google.protobuf.Timestamp" in registry_of(job_pb2.Job).names()
    assert TypeRegistry().names() == []


def test_loading_the_same_file_twice_is_harmless() -> None:
    registry = TypeRegistry()
    registry.add_set(descriptor_set(Order))
    registry.add_set(descriptor_set(Step))  # same file, shop.proto
    registry.add_set(descriptor_set(BasicJob))
    assert "conveyor.examples.Step" in registry.names()
    assert BASIC in registry.names()


def test_given_types_are_used_directly() -> None:
    registry = TypeRegistry(types=[BasicJob])
    assert registry.names() == [BASIC]
    assert registry.message_class(BASIC) is BasicJob
    data = BasicJob(name="x", count=5).SerializeToString()
    assert registry.to_dict(BASIC, data) == {"name": "x", "count": "5"}
    assert registry.from_json(BASIC, '{"name": "x", "count": "5"}') == data


def test_given_types_and_sets_combine() -> None:
    registry = TypeRegistry({"b": descriptor_set(BasicJob)}, types=[Order])
    assert registry.message_class("conveyor.examples.Order") is Order
    assert registry.message_class(BASIC) is not BasicJob
    assert {BASIC, "conveyor.examples.Order"} <= set(registry.names())


def test_unknown_type() -> None:
    registry = registry_of(BasicJob)
    with pytest.raises(conveyor.UnknownType, match=re.escape("acme.Missing")) as info:
        registry.to_dict("acme.Missing", b"")
    assert isinstance(info.value, LookupError)
    assert "start a worker that handles it" in str(info.value)
    assert "types=" in str(info.value)
    with pytest.raises(conveyor.UnknownType):
        registry.from_json("acme.Missing", "{}")


def test_registry_does_not_see_the_default_pool() -> None:
    # BasicJob is imported in this process, but this registry was given nothing
    with pytest.raises(conveyor.UnknownType):
        TypeRegistry().message_class(BASIC)


def test_undecodable_payload() -> None:
    with pytest.raises(conveyor.PayloadDecodeError, match=re.escape(f"does not decode as {BASIC}")):
        registry_of(BasicJob).to_dict(BASIC, b"\x0a\xff")


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("{", "JSON does not match"),
        ("not json", "JSON does not match"),
        ('{"nope": 1}', "no field named"),
        ('{"count": "abc"}', "count"),
        ('{"name": 5}', "name"),
        ("[1, 2]", "JSON does not match"),
        ("null", "JSON does not match"),
        ("5", "JSON does not match"),
    ],
)
def test_bad_json(text: str, pattern: str) -> None:
    with pytest.raises(conveyor.PayloadDecodeError, match=pattern) as info:
        registry_of(BasicJob).from_json(BASIC, text)
    assert BASIC in str(info.value)


def test_bad_dict() -> None:
    with pytest.raises(conveyor.PayloadDecodeError, match="no field named"):
        registry_of(BasicJob).from_json(BASIC, {"title": "x"})


@pytest.mark.parametrize("garbage", [b"not a descriptor", b"\x0a\xff", b"\xff\xff\xff"])
def test_garbage_descriptor_bytes(garbage: bytes) -> None:
    with pytest.raises(conveyor.PayloadDecodeError, match="not a FileDescriptorSet"):
        TypeRegistry().add_set(garbage)
    with pytest.raises(conveyor.PayloadDecodeError):
        TypeRegistry({"x": garbage})


def test_unbuildable_descriptor_set_is_a_decode_error() -> None:
    broken = descriptor_pb2.FileDescriptorSet(
        file=[descriptor_pb2.FileDescriptorProto(name="x.proto", dependency=["missing.proto"])]
    ).SerializeToString()
    with pytest.raises(conveyor.PayloadDecodeError):
        TypeRegistry().add_set(broken)


def test_names_lists_nested_message_types() -> None:
    file = descriptor_pb2.FileDescriptorProto(name="nested.proto", package="nn", syntax="proto3")
    outer = file.message_type.add(name="Outer")
    outer.nested_type.add(name="Inner")
    registry = TypeRegistry(
        {"nn.Outer": descriptor_pb2.FileDescriptorSet(file=[file]).SerializeToString()}
    )
    assert registry.message_class("nn.Outer.Inner").DESCRIPTOR.full_name == "nn.Outer.Inner"
    assert registry.names() == ["nn.Outer", "nn.Outer.Inner"]
