"""Turning protobuf messages into job payloads and back, with the process's own classes."""

from __future__ import annotations

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from .errors import PayloadDecodeError, PayloadTooLarge, PayloadTypeError, UnknownType


def encode_payload(message: object, *, limit: int) -> tuple[str, bytes]:
    """Serialize a protobuf message, returning its full type name and its bytes.

    Raises:
        PayloadTypeError: ``message`` is not a protobuf message instance.
        PayloadTooLarge: the serialized form is longer than ``limit`` bytes.
    """
    if not isinstance(message, Message):
        raise PayloadTypeError(
            f"a job payload must be a protobuf message instance, not {type(message).__name__}; "
            "define the payload in a .proto file and pass an instance of the generated class"
        )
    data = message.SerializeToString()
    if len(data) > limit:
        raise PayloadTooLarge(
            f"{message.DESCRIPTOR.full_name} payload is {len(data)} bytes, over the limit of "
            f"{limit}; store large data elsewhere and pass a reference, "
            "or raise Config.max_payload_bytes"
        )
    return message.DESCRIPTOR.full_name, data


def type_name_of(message: object) -> str:
    """A message's full type name; ``""`` for something that is not one (the enqueue
    that follows refuses it with the reason)."""
    return message.DESCRIPTOR.full_name if isinstance(message, Message) else ""


def message_class(type_name: str) -> type[Message]:
    """The generated class for ``type_name`` from the default descriptor pool.

    Raises:
        UnknownType: no module defining that message has been imported.
    """
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(type_name)
    except KeyError:
        raise UnknownType(
            f"protobuf type {type_name!r} is not known in this process; "
            "import the module generated from its .proto file"
        ) from None
    return message_factory.GetMessageClass(descriptor)


def decode_payload(type_name: str, data: bytes) -> Message:
    """Parse ``data`` as ``type_name``.

    Raises:
        UnknownType: the type is not known in this process.
        PayloadDecodeError: the bytes do not parse as that type.
    """
    message = message_class(type_name)()
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        raise PayloadDecodeError(f"payload does not decode as {type_name}: {exc}") from exc
    return message
