"""Wire compatibility of the .proto files: every field number ever published keeps its name,
type and cardinality, or stays `reserved` once its field is removed.

`schemas/autoglm/v1/descriptor.json` is the committed record of every field published;
`make proto-snapshot` (this module run as a program) adds new fields to it and refuses to
write when the .proto files break it. tests/schemas/test_grpc_contract.py compares the two.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from google.protobuf.descriptor import Descriptor, FileDescriptor

from schemas.autoglm.v1 import messages_pb2, service_pb2

SNAPSHOT = Path(__file__).resolve().parents[2] / "schemas" / "autoglm" / "v1" / "descriptor.json"
FILES: tuple[FileDescriptor, ...] = (messages_pb2.DESCRIPTOR, service_pb2.DESCRIPTOR)
Fields = dict[str, dict[str, dict[str, Any]]]  # message -> field number -> field


def _messages(message: Descriptor) -> list[Descriptor]:
    found = [message]
    for nested in message.nested_types:
        found.extend(_messages(nested))
    return found


def _reserved(message: Descriptor) -> set[int]:
    from google.protobuf import descriptor_pb2

    proto = descriptor_pb2.DescriptorProto()
    message.CopyToProto(proto)
    return {n for r in proto.reserved_range for n in range(r.start, r.end)}


def current(files: tuple[FileDescriptor, ...] = FILES) -> tuple[Fields, dict[str, set[int]]]:
    """(every message's fields by number, every message's reserved numbers)."""
    fields: Fields = {}
    reserved: dict[str, set[int]] = {}
    for file in files:
        for top in file.message_types_by_name.values():
            for message in _messages(top):
                fields[message.full_name] = {
                    str(f.number): {
                        "name": f.name,
                        "type": f.type,
                        "type_name": f.message_type.full_name if f.message_type else "",
                        "repeated": f.is_repeated,
                    }
                    for f in message.fields
                }
                reserved[message.full_name] = _reserved(message)
    return fields, reserved


def breaking(published: Fields, fields: Fields, reserved: dict[str, set[int]]) -> list[str]:
    """What breaks the published fields: a message gone, a number reused or left unreserved."""
    problems = []
    for message, numbers in published.items():
        if message not in fields:
            problems.append(f"{message}: removed (keep it, or reserve its name)")
            continue
        for number, was in numbers.items():
            now = fields[message].get(number)
            if now is None:
                if int(number) not in reserved[message]:
                    problems.append(f"{message}.{was['name']} = {number}: removed, not reserved")
            elif now != was:
                problems.append(f"{message} field {number}: was {was}, now {now}")
    return problems


def published() -> Fields:
    loaded: Fields = json.loads(SNAPSHOT.read_text())
    return loaded


def refresh() -> int:
    fields, reserved = current()
    old = published() if SNAPSHOT.exists() else {}
    problems = breaking(old, fields, reserved)
    if problems:
        print("not written; the .proto files break published fields:", *problems, sep="\n  ")
        return 1
    merged = {m: {**old.get(m, {}), **numbers} for m, numbers in fields.items()}
    for message, numbers in old.items():  # removed (reserved) fields stay on record
        merged[message] = {**numbers, **merged.get(message, {})}
    SNAPSHOT.write_text(_dumps(merged))
    return 0


def _dumps(fields: Fields) -> str:
    """One line per field, so that a change reads as one line of a diff."""
    blocks = []
    for message, numbers in sorted(fields.items()):
        lines = [
            f"    {json.dumps(n)}: {json.dumps(f)}"
            for n, f in sorted(numbers.items(), key=lambda kv: int(kv[0]))
        ]
        body = ",\n".join(lines)
        blocks.append(
            f"  {json.dumps(message)}: {{\n{body}\n  }}"
            if lines
            else f"  {json.dumps(message)}: {{}}"
        )
    return "{\n" + ",\n".join(blocks) + "\n}\n"


if __name__ == "__main__":
    sys.exit(refresh())
