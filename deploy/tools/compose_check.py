"""Check deploy/docker-compose.yml: valid against the Compose specification's JSON schema
(from the Go module github.com/compose-spec/compose-go/v2), every worker and dispatcher on a
slot of its own that `--scale` cannot copy, every worker's model configured, Kafka and Redis
data in volumes.

`compose_check.py docker-compose.yml [compose-spec.json]` (deploy/check.sh).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml

COMPOSE_GO = "github.com/compose-spec/compose-go/v2@v2.16.2"


def compose_schema() -> dict[str, Any]:
    out = subprocess.run(
        ["go", "mod", "download", "-json", COMPOSE_GO],
        check=True,
        capture_output=True,
        text=True,
        cwd="/",
    ).stdout
    schema: dict[str, Any] = json.loads(
        (Path(json.loads(out)["Dir"]) / "schema" / "compose-spec.json").read_text()
    )
    return schema


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return list(command) if isinstance(command, list) else str(command).split()


def check(compose: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    problems = [
        f"schema: {'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(compose)
    ]
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from mcp.settings import Settings

    models = {m.name for m in Settings(dev_mode=True).models}
    slots: dict[tuple[str, ...], str] = {}
    for name, service in compose["services"].items():
        command = command_of(service)
        if not command or command[0] not in ("worker", "dispatcher", "api"):
            continue
        if "container_name" not in service:
            problems.append(f"{name}: no container_name, so `--scale` would copy its slot")
        if command[0] == "api":
            key: tuple[str, ...] = ("api", str(service["environment"].get("AUTOGLM_INSTANCE_ID")))
        else:
            slot = command[command.index("--slot") + 1] if "--slot" in command else "0"
            model = command[command.index("--model") + 1] if "--model" in command else ""
            if command[0] == "worker" and model not in models:
                problems.append(f"{name}: model {model!r} is not configured ({sorted(models)})")
            key = (command[0], model, slot)
        if key in slots:
            problems.append(f"{name} and {slots[key]} share {key}: they would fence each other")
        slots[key] = name
    for name, path in (("kafka", "/var/lib/kafka/data"), ("redis", "/data")):
        volumes = [str(v) for v in compose["services"][name].get("volumes", [])]
        if not any(
            v.split(":")[1] == path and v.split(":")[0] in compose["volumes"] for v in volumes
        ):
            problems.append(f"{name}: its data ({path}) is not in a named volume")
    return problems


def main(argv: list[str]) -> int:
    compose = yaml.safe_load(Path(argv[0]).read_text())
    schema = json.loads(Path(argv[1]).read_text()) if len(argv) > 1 else compose_schema()
    problems = check(compose, schema)
    for problem in problems:
        print(f"{argv[0]}: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
