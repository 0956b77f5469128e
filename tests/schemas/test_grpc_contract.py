"""Compatibility of the Protobuf contract: field numbers are never reused (the committed
descriptor snapshot), the previous and the next revision of a message decode each other, and
the generated gRPC code is current."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    struct_pb2,
    timestamp_pb2,
)

from api.rpc.front import submit_response
from schemas import SubmitRequest, SubmitResponse, TaskLinks, TaskStatus, utcnow
from schemas.autoglm.v1 import messages_pb2 as pb
from schemas.codec import PROTOBUF, decode
from schemas.protobuf import to_protobuf
from tests.schemas.proto_compat import breaking, current, published

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "schemas/autoglm/v1/service.proto"
Edit = Callable[[descriptor_pb2.DescriptorProto], None]


def test_no_published_field_number_is_reused_or_freed() -> None:
    fields, reserved = current()
    assert breaking(published(), fields, reserved) == []


def test_every_field_is_on_record() -> None:
    fields, _ = current()
    record = published()
    missing = [
        f"{message}.{field['name']}"
        for message, numbers in fields.items()
        for number, field in numbers.items()
        if record.get(message, {}).get(number) != field
    ]
    assert missing == [], "run `make proto-snapshot` to record the new fields"


def test_the_check_catches_a_reused_and_a_freed_number() -> None:
    fields, reserved = current()
    reused = copy.deepcopy(fields)
    reused["autoglm.v1.SubmitRequest"]["10"] = {
        "name": "lane",
        "type": 5,  # an int32 where a string was
        "type_name": "",
        "repeated": False,
    }
    assert len(breaking(published(), reused, reserved)) == 1
    freed = copy.deepcopy(fields)
    del freed["autoglm.v1.TaskView"]["12"]
    assert breaking(published(), freed, reserved) == [
        "autoglm.v1.TaskView.metadata = 12: removed, not reserved"
    ]
    reserved_now = {**reserved, "autoglm.v1.TaskView": {12}}
    assert breaking(published(), freed, reserved_now) == []


def _revision(edit: Edit) -> Any:
    """SubmitRequest of another revision of messages.proto, in a pool of its own."""
    file = descriptor_pb2.FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(file)
    edit(next(m for m in file.message_type if m.name == "SubmitRequest"))
    pool = descriptor_pool.DescriptorPool()
    for dependency in (struct_pb2, timestamp_pb2):
        proto = descriptor_pb2.FileDescriptorProto()
        dependency.DESCRIPTOR.CopyToProto(proto)
        pool.Add(proto)
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("autoglm.v1.SubmitRequest"))


def _without_priority(message: descriptor_pb2.DescriptorProto) -> None:
    """The revision before `priority` (field 10, the last, with its synthetic oneof)."""
    field = next(f for f in message.field if f.name == "priority")
    message.field.remove(field)
    del message.oneof_decl[field.oneof_index]


def _with_note(message: descriptor_pb2.DescriptorProto) -> None:
    """A later revision that adds a field."""
    message.field.add(
        name="client_note",
        number=11,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
        json_name="clientNote",
    )


def test_the_previous_revision_and_this_one_decode_each_other() -> None:
    previous = _revision(_without_priority)
    old = previous(model="echo", action="generate")
    old.payload.update({"n": 1})
    from_old = decode(SubmitRequest, old.SerializeToString(), PROTOBUF)
    assert (from_old.model, from_old.payload, from_old.priority) == ("echo", {"n": 1}, None)

    new = pb.SubmitRequest(model="echo", action="generate", priority="high")
    read_by_old = previous()
    read_by_old.ParseFromString(new.SerializeToString())
    assert read_by_old.model == "echo"
    # An old reader that passes the message on keeps the field it does not know.
    passed_on = decode(SubmitRequest, read_by_old.SerializeToString(), PROTOBUF)
    assert passed_on.priority == "high"


def test_a_next_revision_decodes_here_and_keeps_its_field() -> None:
    later = _revision(_with_note)
    sent = later(model="echo", action="generate", client_note="from a newer client")
    assert decode(SubmitRequest, sent.SerializeToString(), PROTOBUF).model == "echo"
    here = pb.SubmitRequest()
    here.ParseFromString(sent.SerializeToString())
    back = later()
    back.ParseFromString(here.SerializeToString())
    assert back.client_note == "from a newer client"


def test_the_fast_submit_answer_equals_the_generic_conversion() -> None:
    answer = SubmitResponse(
        task_id="t" * 32,
        status=TaskStatus.QUEUED,
        created_at=utcnow(),
        links=TaskLinks.for_task("t" * 32),
    )
    assert submit_response(answer) == to_protobuf(answer)


def test_generated_service_code_is_current(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            ".",
            f"--python_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            SERVICE,
        ],
        cwd=ROOT,
        check=True,
    )
    for suffix in ("_pb2.py", "_pb2_grpc.py"):
        generated = tmp_path / SERVICE.replace(".proto", suffix)
        committed = ROOT / SERVICE.replace(".proto", suffix)
        assert generated.read_text() == committed.read_text(), "run `make proto`"
