#!/usr/bin/env bash
# Prints a directory of JSON schemas for kubeconform, built once into
# ~/.cache/autoglm-mcp/tools/schemas-<versions>/ from registries only:
#   kubernetes/  Kubernetes' own schemas (strict), from the PyPI package kubernetes-validate
#   keda/        KEDA's ScaledObject and TriggerAuthentication, converted from the CRDs in the Go
#                module github.com/kedacore/keda/v2 (config/crd/bases)
# Usage: deploy/tools/schemas.sh PYTHON
set -euo pipefail
KUBERNETES_VALIDATE_VERSION=1.37.0
KUBERNETES_VERSION=1.33.0
KEDA_VERSION=v2.21.0
py=$(realpath "${1:?python with pyyaml}")
here=$(cd "$(dirname "$0")" && pwd)
dir=${AUTOGLM_TOOLS:-$HOME/.cache/autoglm-mcp/tools}/schemas-k8s$KUBERNETES_VERSION-keda$KEDA_VERSION
if [ ! -f "$dir/.complete" ]; then
  echo "fetching Kubernetes $KUBERNETES_VERSION and KEDA $KEDA_VERSION schemas (once)" >&2
  rm -rf "$dir" && mkdir -p "$dir/keda"
  tmp=$(mktemp -d) && trap 'rm -rf "$tmp"' EXIT
  "$py" -m pip download -q --no-deps -d "$tmp" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" >&2
  "$py" - "$tmp"/kubernetes_validate-*.whl "$dir/kubernetes" "v$KUBERNETES_VERSION-local-strict" <<'PY'
import json, sys, zipfile
from pathlib import Path
wheel, out, name = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
prefix = f"kubernetes_validate/kubernetes-json-schema/{name}/"
with zipfile.ZipFile(wheel) as z:
    members = [m for m in z.namelist() if m.startswith(prefix) and m.endswith(".json")]
    if not members:
        sys.exit(f"{name} is not in {wheel}")
    out.mkdir(parents=True)
    for m in members:
        # Their $id is a kubernetes.io URL and their references name /api/_definitions.json:
        # without the $id, kubeconform resolves the references to the file beside them.
        schema = json.loads(z.read(m).decode().replace('"/api/_definitions.json#', '"_definitions.json#'))
        schema.pop("$id", None)
        (out / m[len(prefix):]).write_text(json.dumps(schema))
PY
  keda=$(cd "$tmp" && go mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION" \
    | "$py" -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
  "$py" "$here/crd2schema.py" "$dir/keda" "$keda"/config/crd/bases/keda.sh_*.yaml >/dev/null
  touch "$dir/.complete"
fi
echo "$dir"
