#!/usr/bin/env bash
# tinygo-build.sh TINYGO OUT PKG
#
# Builds the Go package PKG (run from inside its module) into the proxy-wasm plugin OUT
# with the TinyGo binary TINYGO installed by install-tinygo.sh and the wasip1-debian
# target file beside this script (tinygo/wasip1-debian.json). Proxy-wasm hosts call exports of a WASI reactor, hence c-shared and no
# scheduler (the asyncify scheduler and the command build mode exit after main).
set -euo pipefail

if [[ $# -ne 3 ]]; then
	echo "usage: $0 TINYGO OUT PKG" >&2
	exit 2
fi
tinygo=$1
out=$2
pkg=$3

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# TINYGOROOT is the folder that holds build/tinygo.
root=$(cd "$(dirname "$tinygo")/.." && pwd)

# TinyGo loads packages through `go list`: keep the module read-only and drop any
# GOFLAGS meant for the standard toolchain (e.g. -race) that it would pass on.
TINYGOROOT=$root GOFLAGS=-mod=readonly exec "$tinygo" build \
	-target="$here/tinygo/wasip1-debian.json" \
	-buildmode=c-shared \
	-scheduler=none \
	-no-debug \
	-o "$out" \
	"$pkg"
