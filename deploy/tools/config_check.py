"""Check `helm template` output: each rendering's ConfigMap, with its Secret's AUTOGLM_*
values over it, is a configuration the platform accepts; every worker StatefulSet runs a model
of that configuration; every image names a registry; Kafka and Redis are not loopback.

`config_check.py RENDERED.yaml...` (deploy/check.sh).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mcp.settings import Settings


def check(rendered: Path) -> list[str]:
    docs = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    config_maps = [d for d in docs if d["kind"] == "ConfigMap" and "config.yaml" in d["data"]]
    if len(config_maps) != 1:
        return [f"{rendered.name}: {len(config_maps)} configuration ConfigMaps"]
    secret_env: dict[str, str] = {}
    for doc in docs:
        if doc["kind"] == "Secret":
            secret_env.update(doc.get("stringData") or {})
    problems: list[str] = []
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as config:
        config.write(config_maps[0]["data"]["config.yaml"])
        config.flush()
        saved = dict(os.environ)
        os.environ.update({"AUTOGLM_CONFIG": config.name, **secret_env})
        try:
            settings = Settings()
        except ValueError as error:
            return [f"{rendered.name}: configuration refused: {error}"]
        finally:
            os.environ.clear()
            os.environ.update(saved)
    for endpoint in (settings.kafka.bootstrap_servers, settings.redis.url):
        if "127.0.0.1" in endpoint or "localhost" in endpoint:
            problems.append(f"{rendered.name}: {endpoint} is loopback")
    for doc in docs:
        if doc["kind"] != "StatefulSet":
            continue
        pod: dict[str, Any] = doc["spec"]["template"]["spec"]
        for container in pod["containers"]:
            image = container["image"]
            if "/" not in image.split(":")[0] and container["name"] in ("api", "worker"):
                problems.append(f"{rendered.name}: image {image} names no registry")
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            if container["name"] == "worker" and settings.model(str(env.get("MODEL"))) is None:
                problems.append(f"{rendered.name}: worker of unknown model {env.get('MODEL')}")
    return problems


def main(paths: list[str]) -> int:
    problems = [p for path in paths for p in check(Path(path))]
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
