"""Write kubeconform JSON schemas for the kinds of CustomResourceDefinition YAML files.

`crd2schema.py OUT_DIR CRD.yaml...` writes `<kind>-<group prefix>-<version>.json` per served
version, the layout of kubeconform's `{{ .ResourceKind }}{{ .KindSuffix }}.json`. Like
kubeconform's own openapi2jsonschema in strict mode, an object that lists its properties and
says nothing of others accepts no others.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml


def strict(node: Any) -> Any:
    if isinstance(node, dict):
        out = {key: strict(value) for key, value in node.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [strict(item) for item in node]
    return node


def convert(crd_file: Path, out_dir: Path) -> list[Path]:
    written = []
    for crd in yaml.safe_load_all(crd_file.read_text()):
        if not crd or crd.get("kind") != "CustomResourceDefinition":
            continue
        spec = crd["spec"]
        kind = spec["names"]["kind"].lower()
        group = spec["group"].split(".")[0]
        for version in spec["versions"]:
            schema = strict(version["schema"]["openAPIV3Schema"])
            path = out_dir / f"{kind}-{group}-{version['name']}.json"
            path.write_text(json.dumps(schema, indent=1))
            written.append(path)
    return written


def main(argv: list[str]) -> int:
    out_dir = Path(argv[0])
    out_dir.mkdir(parents=True, exist_ok=True)
    for crd_file in argv[1:]:
        for path in convert(Path(crd_file), out_dir):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
