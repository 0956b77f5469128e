#!/usr/bin/env bash
# Offline validation of the deploy files (`make deploy-check`; CI runs it):
# - the Helm chart: `helm lint`, then `helm template` of four value sets piped to
#   `kubeconform -strict` against Kubernetes' and KEDA's schemas (nothing may lack a schema);
# - the chart's guards: rendering fails without an image registry, without an admin credential
#   while auth is on, and with more workers than partitions;
# - deploy/docker-compose.yml against the Compose specification's schema (Go module compose-go).
# helm and kubeconform are built from the Go module proxy once (deploy/tools/tool.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
helm=$(deploy/tools/tool.sh helm)
kubeconform=$(deploy/tools/tool.sh kubeconform)
schemas=$(deploy/tools/schemas.sh "$py")
chart=deploy/helm/autoglm-mcp
out=$(mktemp -d) && trap 'rm -rf "$out"' EXIT
base=(--namespace glm --kube-version 1.33.0 --set image.registry=registry.example.com/glm)
# A credential made up now: no usable secret lives in the repository.
admin_key=$("$py" -c 'import secrets; print("agk_" + secrets.token_urlsafe(24))')
whsec=$("$py" -c 'import base64, secrets; print("whsec_" + base64.b64encode(secrets.token_bytes(24)).decode())')

"$helm" lint --strict "$chart" "${base[@]}" --set secrets.existingSecret=glm-secrets

render() {  # name, then helm flags
  local name=$1 && shift
  "$helm" template glm "$chart" "${base[@]}" "$@" > "$out/$name.yaml"
}
# 1. as shipped: its own Kafka and Redis, a Secret you made
render shipped --set secrets.existingSecret=glm-secrets
# 2. the chart makes the Secret; devMode
render secret --set devMode=true --set secrets.bootstrapAdminKey="$admin_key" \
  --set-json "secrets.webhookSecrets={\"default\":[\"$whsec\"]}" --set secrets.redisUrl=redis://:pw@redis:6379/0
# 3. production: your Kafka and Redis, KEDA, a GPU model from a checkpoint volume, S3 blobs
render production -f - <<YAML
secrets: {existingSecret: glm-secrets}
kafka:
  internal: {enabled: false}
  bootstrapServers: glm-kafka-bootstrap.kafka.svc.cluster.local:9093
  replicationFactor: 3
  minInsyncReplicas: 2
  partitions: 16
  clientConfig: {security.protocol: SASL_SSL, sasl.mechanism: SCRAM-SHA-512}
redis:
  internal: {enabled: false}
keda: {enabled: true, authenticationRef: glm-kafka-auth, gpu: {serverAddress: "http://prometheus.monitoring.svc.cluster.local:9090"}}
api: {processes: 4, resources: {requests: {cpu: "4", memory: 1Gi}, limits: {memory: 4Gi}}}
grpc: {enabled: true}
blobs: {backend: s3, s3: {bucket: glm-blobs, region: eu-west-1}}
modelStorage: {existingClaim: glm-checkpoints}
models:
  - name: echo
    backend: echo
    actions: [generate]
    worker: {replicas: 1, maxReplicas: 2}
  - name: glm-4-9b-chat
    backend: transformers
    path: /models/glm-4-9b-chat
    actions: [generate, classify, embed]
    max_batch_size: 16
    concurrency: 1
    worker:
      replicas: 2
      maxReplicas: 16
      resources: {limits: {nvidia.com/gpu: 1}}
      nodeSelector: {nvidia.com/gpu.present: "true"}
      tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
defaultModel: glm-4-9b-chat
YAML
# 4. KEDA on the chart's own Kafka
render keda --set secrets.existingSecret=glm-secrets --set keda.enabled=true --set grpc.enabled=true

"$kubeconform" -strict -summary -kubernetes-version 1.33.0 \
  -schema-location "$schemas/kubernetes/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
  -schema-location "$schemas/keda/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
  "$out"/*.yaml

# api.processes reaches the API's command line.
grep -q 'args: \["api", "--processes", "4"\]' "$out/production.yaml" \
  || { echo "deploy-check: api.processes=4 is not on the API's command line" >&2; exit 1; }
grep -q 'args: \["api"\]' "$out/shipped.yaml" \
  || { echo "deploy-check: one API process per pod is not the default" >&2; exit 1; }

# Every rendered ConfigMap is a configuration the platform accepts (its Secret's values over it).
"$py" deploy/tools/config_check.py "$out"/*.yaml

refused() {  # expected message, then helm flags
  local want=$1 && shift
  if "$helm" template glm "$chart" "$@" > "$out/refused.log" 2>&1; then
    echo "deploy-check: rendering should have failed ($want): $*" >&2 && exit 1
  fi
  grep -q "$want" "$out/refused.log" || { cat "$out/refused.log" >&2; exit 1; }
}
refused "image.registry is required" --kube-version 1.33.0 --set secrets.existingSecret=glm-secrets
refused "no credential is set" "${base[@]}"
refused "above its partitions" "${base[@]}" --set secrets.existingSecret=glm-secrets \
  --set keda.enabled=true --set kafka.partitions=2
refused "turn kafka.internal.enabled off" "${base[@]}" --set secrets.existingSecret=glm-secrets \
  --set kafka.bootstrapServers=kafka:9092
refused "api.processes is 0" "${base[@]}" --set secrets.existingSecret=glm-secrets \
  --set api.processes=0

"$py" deploy/tools/compose_check.py deploy/docker-compose.yml
echo "deploy-check: chart (4 renderings, 5 refusals) and compose file valid"
