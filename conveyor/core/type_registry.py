"""Protobuf descriptors that travel through storage.

Workers publish a ``FileDescriptorSet`` for every type they handle. The admin
and the CLI load those sets into a private pool, so they can decode a payload
to JSON, or build one from JSON, without importing any user code.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, cast

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import FileDescriptor
from google.protobuf.message import DecodeError, Message

from .errors import PayloadDecodeError, UnknownType


def descriptor_set(message_type: type[Message]) -> bytes:
    """A serialized ``FileDescriptorSet`` holding the type's file and all it imports."""
    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}

    def add(file: FileDescriptor) -> None:
        if file.name in files:
            return
        for dependency in file.dependencies:
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        files[file.name] = proto

    add(cast(FileDescriptor, message_type.DESCRIPTOR.file))
    return descriptor_pb2.FileDescriptorSet(file=list(files.values())).SerializeToString()


class TypeRegistry:
    """Message classes built from published descriptor sets, in a private pool."""

    def __init__(self, sets: Mapping[str, bytes] = {}, types: Iterable[type[Message]] = ()) -> None:
        self._pool = descriptor_pool.DescriptorPool()
        self._files: set[str] = set()
        self._local: dict[str, type[Message]] = {t.DESCRIPTOR.full_name: t for t in types}
        for data in sets.values():
            self.add_set(data)

    def add_set(self, data: bytes) -> None:
        """Load a serialized ``FileDescriptorSet``; files already loaded are skipped.

        Raises:
            PayloadDecodeError: the bytes are not a descriptor set.
        """
        fds = descriptor_pb2.FileDescriptorSet()
        try:
            fds.ParseFromString(data)
        except DecodeError as exc:
            raise PayloadDecodeError(f"not a FileDescriptorSet: {exc}") from exc
        for file in fds.file:
            if file.name not in self._files:
                try:
                    self._pool.Add(file)
                except (TypeError, ValueError) as exc:  # e.g. it imports a file not in the set
                    raise PayloadDecodeError(
                        f"descriptor set does not build ({file.name}): {exc}"
                    ) from exc
                self._files.add(file.name)

    def names(self) -> list[str]:
        """Every message type this registry can decode, sorted."""
        found = set(self._local)
        pending = [
            message
            for file_name in self._files
            for message in self._pool.FindFileByName(file_name).message_types_by_name.values()
        ]
        while pending:
            message = pending.pop()
            if not message.GetOptions().map_entry:
                found.add(message.full_name)
            pending.extend(message.nested_types)
        return sorted(found)

    def message_class(self, type_name: str) -> type[Message]:
        """The class for ``type_name``.

        Raises:
            UnknownType: no published descriptor (or given type) defines it.
        """
        if type_name in self._local:
            return self._local[type_name]
        try:
            descriptor = self._pool.FindMessageTypeByName(type_name)
        except KeyError:
            raise UnknownType(
                f"no descriptor published for {type_name!r}; start a worker that handles it, "
                "or give the type to the admin with types=(...)"
            ) from None
        return message_factory.GetMessageClass(descriptor)

    def to_dict(self, type_name: str, data: bytes) -> dict[str, Any]:
        """Decode a payload to a JSON-compatible dict (protobuf's JSON mapping)."""
        message = self.message_class(type_name)()
        try:
            message.ParseFromString(data)
        except DecodeError as exc:
            raise PayloadDecodeError(f"payload does not decode as {type_name}: {exc}") from exc
        return json_format.MessageToDict(message, preserving_proto_field_name=True)

    def from_json(self, type_name: str, text: str | Mapping[str, Any]) -> bytes:
        """Build a payload from JSON text or a dict.

        Raises:
            UnknownType: the type is unknown.
            PayloadDecodeError: the JSON does not match the type's fields.
        """
        message = self.message_class(type_name)()
        try:
            source = json.loads(text) if isinstance(text, str) else dict(text)
            json_format.ParseDict(source, message)
        except (json_format.ParseError, ValueError, TypeError) as exc:
            raise PayloadDecodeError(f"JSON does not match {type_name}: {exc}") from exc
        return message.SerializeToString()
