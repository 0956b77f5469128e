#!/usr/bin/env bash
# Prints the path of a Go-built tool at a pinned version, building it once from the Go module
# proxy into ~/.cache/autoglm-mcp/tools/<name>-<version>/ (CI reuses the cache; nothing is
# downloaded from GitHub). Usage: deploy/tools/tool.sh helm|kubeconform
set -euo pipefail
HELM_VERSION=v3.22.0
KUBECONFORM_VERSION=v0.7.0
cache=${AUTOGLM_TOOLS:-$HOME/.cache/autoglm-mcp/tools}
case "${1:?tool name}" in
  helm) pkg=helm.sh/helm/v3/cmd/helm version=$HELM_VERSION ;;
  kubeconform) pkg=github.com/yannh/kubeconform/cmd/kubeconform version=$KUBECONFORM_VERSION ;;
  *) echo "unknown tool: $1" >&2; exit 2 ;;
esac
dir=$cache/$1-$version
if [ ! -x "$dir/$1" ]; then
  command -v go >/dev/null || { echo "go is needed to build $1 (apt-get install golang-go)" >&2; exit 1; }
  mkdir -p "$dir"
  echo "building $1 $version from the Go module proxy (once)" >&2
  GOBIN="$dir" CGO_ENABLED=0 nice go install -trimpath -ldflags=-s "$pkg@$version" >&2
fi
echo "$dir/$1"
