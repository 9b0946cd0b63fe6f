#!/usr/bin/env bash
# Runs the whole test suite against a real Apache Kafka. Uses the broker at $KAFKA_BOOTSTRAP when
# it is set; otherwise starts the local broker of deploy/kafka/kafka.sh, and stops it afterwards
# when this script was the one that started it. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

kafka=deploy/kafka/kafka.sh
started_broker=
stop_broker() {
    if [[ -n "$started_broker" ]]; then
        "$kafka" stop || true
    fi
}
trap stop_broker EXIT

if [[ -z "${KAFKA_BOOTSTRAP:-}" ]]; then
    if ! "$kafka" status >/dev/null; then
        started_broker=1
    fi
    KAFKA_BOOTSTRAP=$("$kafka" start)
    export KAFKA_BOOTSTRAP
fi
echo "test.sh: Kafka at $KAFKA_BOOTSTRAP" >&2

# kcat runs the alert-topic example of docs/examples in the suite (Debian's package).
if ! command -v kcat >/dev/null; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "test.sh: installing kcat" >&2
        apt-get update -q >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q kcat >&2
    else
        echo "test.sh: kcat is missing; install it (Debian: apt-get install kcat)" >&2
        exit 1
    fi
fi

# The Python alert subscriber of docs/examples runs in the suite: its client library goes into a
# virtual environment cached outside the repository.
if [[ -z "${VAEWATCH_EXAMPLES_PYTHON:-}" ]]; then
    venv="$HOME/.cache/vaewatch/examples-venv"
    stamp="$venv/.installed-$(sha256sum docs/examples/requirements.txt | cut -c1-16)"
    if [[ ! -f "$stamp" ]]; then
        echo "test.sh: installing docs/examples/requirements.txt into $venv" >&2
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r docs/examples/requirements.txt
        touch "$stamp"
    fi
    export VAEWATCH_EXAMPLES_PYTHON="$venv/bin/python"
fi

# The local S3-compatible server the s3:// archive tests run against (built once, cached).
if [[ -z "${VAEWATCH_S3_SERVER:-}" ]]; then
    VAEWATCH_S3_SERVER=$(scripts/s3_server.sh)
    export VAEWATCH_S3_SERVER
fi

# The alert-subscriber example program, which tests/subscribers.rs runs.
cargo build --examples
cargo test --all-targets "$@"
