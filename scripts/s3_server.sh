#!/usr/bin/env bash
# Installs the local S3-compatible server the tests of the s3:// archive run against: s3s-fs
# (Apache-2.0, from crates.io), which serves the S3 API over a local folder. Built once into a
# cache outside the repository; prints the path of its binary. The tests start and stop their
# own server on a free loopback port.
set -euo pipefail

version=0.14.1
root="${VAEWATCH_TOOLS:-$HOME/.cache/vaewatch/tools}/s3s-fs-$version"
binary="$root/bin/s3s-fs"
if [[ ! -x "$binary" ]]; then
    echo "s3_server.sh: building s3s-fs $version from crates.io into $root (once)" >&2
    CARGO_TARGET_DIR="$root/build" cargo install --quiet --locked --root "$root" \
        --version "$version" --features binary s3s-fs >&2
    rm -rf "$root/build"
fi
echo "$binary"
