#!/usr/bin/env bash
# install-tinygo.sh VERSION DIR
#
# Builds TinyGo VERSION from the Go module proxy against Debian's LLVM 19 into DIR
# (which becomes TINYGOROOT) and installs the wasip1-debian target (scripts/tinygo/)
# that links Debian's prebuilt wasi-libc and compiler-rt. Result: DIR/build/tinygo.
# Idempotent: a finished install is left alone; the target file is refreshed.
set -euo pipefail

if [[ $# -ne 2 ]]; then
	echo "usage: $0 VERSION DIR" >&2
	exit 2
fi
version=${1#v}
dir=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
target_src=$here/tinygo/wasip1-debian.json
module=github.com/tinygo-org/tinygo

log() { echo ">> tinygo $version: $*"; }

# Debian packages: LLVM/Clang 19 to build TinyGo; lld for wasm-ld; binaryen for wasm-opt;
# wasi-libc and the wasm32 compiler-rt builtins the target file links.
packages=(llvm-19-dev libclang-19-dev clang-19 lld-19 binaryen wasi-libc libclang-rt-19-dev-wasm32)
install_packages() {
	local missing=()
	for p in "${packages[@]}"; do
		if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
			missing+=("$p")
		fi
	done
	[[ ${#missing[@]} -eq 0 ]] && return
	local sudo=()
	[[ $(id -u) -ne 0 ]] && sudo=(sudo)
	log "installing Debian packages: ${missing[*]}"
	"${sudo[@]}" apt-get update -qq
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

install_target() {
	mkdir -p "$dir/targets"
	if ! cmp -s "$target_src" "$dir/targets/wasip1-debian.json"; then
		cp "$target_src" "$dir/targets/wasip1-debian.json"
		log "installed target $dir/targets/wasip1-debian.json"
	fi
}

install_packages

if [[ -x $dir/build/tinygo ]] && "$dir/build/tinygo" version 2>/dev/null | grep -q "version $version "; then
	install_target
	log "already installed at $dir/build/tinygo"
	exit 0
fi

log "downloading $module@v$version"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Outside any module so the download never touches a go.mod; exact version (the proxy may refuse @latest).
src=$(cd "$tmp" && GOFLAGS=-mod=mod go mod download -json "$module@v$version" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
if [[ -z $src || ! -d $src ]]; then
	echo "install-tinygo: go mod download did not return a module directory" >&2
	exit 1
fi

# The module cache is read-only; TinyGo writes into its root, so work on a copy.
log "copying $src -> $dir"
rm -rf "$dir" "$dir.partial"
mkdir -p "$(dirname "$dir")"
cp -R "$src" "$dir.partial"
chmod -R u+w "$dir.partial"
# The module zip lacks the src/net git submodule; an empty package dir lets the loader find it.
mkdir -p "$dir.partial/src/net"
mv "$dir.partial" "$dir"

log "building $dir/build/tinygo (-tags llvm19, about a minute)"
(cd "$dir" && GOFLAGS=-mod=mod go build -tags llvm19 -o build/tinygo .)
install_target
log "done: $("$dir/build/tinygo" version)"
