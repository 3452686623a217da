#!/usr/bin/env bash
# make deploy OVERLAY=...: apply a manifests/ overlay the way its install type needs.
#   multi-user (cluster): the Profile first, wait for the profile controller to create the
#     namespace, then the namespaced objects. kfp-launcher stays the profile controller's.
#   standalone (local-kind): the objects into KFP's namespace, then merge our providers into
#     KFP's own kfp-launcher ConfigMap (manifests/kfp-launcher/providers-patch.yaml).
set -euo pipefail
overlay="${1:?usage: deploy.sh OVERLAY}"
kubectl="${KUBECTL:-kubectl}"
dir="manifests/overlays/${overlay}"
[ -f "${dir}/kustomization.yaml" ] || { echo "no overlay ${dir}" >&2; exit 2; }
[ -f manifests/base/s3-credentials.env ] || {
  echo "manifests/base/s3-credentials.env missing: cp manifests/base/s3-credentials.env.example" \
    "manifests/base/s3-credentials.env and set real keys" >&2
  exit 2
}
built="$("${kubectl}" kustomize "${dir}")"
install="$(grep -m1 -o 'ppminilm.dev/install: [a-z-]*' <<<"${built}" | cut -d' ' -f2)"
namespace="$(grep -m1 -o '^  namespace: [a-z0-9-]*' <<<"${built}" | cut -d' ' -f4)"
if [ "${install}" = "multi-user" ]; then
  "${kubectl}" apply -k "${dir}" -l ppminilm.dev/stage=profile
  echo "waiting for the profile namespace ${namespace}"
  for _ in $(seq 60); do
    "${kubectl}" get namespace "${namespace}" >/dev/null 2>&1 && break
    sleep 5
  done
fi
"${kubectl}" apply -k "${dir}"
if [ "${install}" = "standalone" ]; then
  "${kubectl}" -n "${namespace}" patch configmap kfp-launcher --type merge \
    --patch-file manifests/kfp-launcher/providers-patch.yaml
fi
echo "deployed ${overlay} (${install}) into namespace ${namespace}"
