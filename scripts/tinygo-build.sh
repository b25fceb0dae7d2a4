#!/usr/bin/env bash
# tinygo-build.sh TINYGO OUT PKG
#
# Builds the Go package PKG (run from inside its module) into the proxy-wasm plugin OUT with the TinyGo
# binary TINYGO installed by install-tinygo.sh and the target file tinygo/wasip1-debian.json beside this
# script. Proxy-wasm hosts call exports of a WASI reactor, hence c-shared and no scheduler (the asyncify
# scheduler and the command build mode exit after main).
#
# -tags custommalloc drops TinyGo's exported malloc/free. Envoy (proxy-wasm-cpp-host) hands every header,
# property and body to the plugin in memory it gets from the module's `malloc` export when there is one,
# and only otherwise from `proxy_on_memory_allocate`. TinyGo's malloc keeps each block alive until `free`,
# which the SDK never calls, so with it Envoy's RSS grows with the request data of every request (measured:
# +160 MB per 100k requests). Without it Envoy uses the SDK's proxy_on_memory_allocate, whose buffers the
# garbage collector reclaims. Nothing in the plugin may need a C malloc: the link does not fail if something
# does (wasi-libc links its own allocator, which then grows the same memory as TinyGo's heap and corrupts it;
# os.Getenv did, through getenv), so filter/policy's TestTinyGoBuildLinksNoLibcMalloc checks the build.
#
# -opt=2 (speed) instead of TinyGo's default -opt=z (size), chosen by measurement: the traced stream of
# BenchmarkRequestVersus costs 0.81x the -opt=z build's (-opt=s: 0.95x), for a module of 798 KB instead of
# 615 KB (docs/filter.md).
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
	-opt=2 \
	-tags custommalloc \
	-o "$out" \
	"$pkg"
