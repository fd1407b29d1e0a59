"""Prints the official Python SDK 0.3.x's A2A protobuf (package a2a.v1) as
JSON — every message's fields (number, type, repeated, JSON name, message
or enum type, oneof), every enum's values, the service's methods — so a
test can hold Switchyard's copy of the v0.3 proto equal to it."""

import json

from a2a.grpc import a2a_pb2


def fields(message):
    return {
        f.name: {
            "number": f.number,
            "type": f.type,
            "repeated": f.is_repeated,
            "json_name": f.json_name,
            "type_name": (f.message_type or f.enum_type).full_name if (f.message_type or f.enum_type) else "",
            "oneof": f.containing_oneof.name if f.containing_oneof else "",
        }
        for f in message.fields
    }


file = a2a_pb2.DESCRIPTOR
service = file.services_by_name["A2AService"]
print(json.dumps({
    "package": file.package,
    "service": service.full_name,
    "messages": {name: fields(m) for name, m in file.message_types_by_name.items()},
    "enums": {name: {v.name: v.number for v in e.values} for name, e in file.enum_types_by_name.items()},
    "methods": {
        m.name: {"input": m.input_type.full_name, "output": m.output_type.full_name, "streaming": m.server_streaming}
        for m in service.methods
    },
}))
