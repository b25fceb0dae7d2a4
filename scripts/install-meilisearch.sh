#!/usr/bin/env bash
# install-meilisearch.sh VERSION SHA256 DEST DEFAULT_SOURCE
#
# Installs the Meilisearch server binary DEST (e.g. .tools/meilisearch-1.50.0/meilisearch) by copying
# $MEILI_BIN if set, else DEFAULT_SOURCE (the Makefile passes ../shared/tools/meilisearch-VERSION/meilisearch),
# after checking its sha256 against SHA256 and that `--version` reports VERSION. No package registry ships
# the Meilisearch server, so the binary comes from a prebuilt file. Failing both, on a machine that reaches
# GitHub, it downloads the official release binary of VERSION (a different build, so another checksum:
# checked against $MEILI_RELEASE_SHA256 when set, else only its version is checked and its sha256 printed).
# Idempotent: an installed binary with the right checksum and version is left alone.
set -euo pipefail

if [[ $# -ne 4 ]]; then
	echo "usage: $0 VERSION SHA256 DEST DEFAULT_SOURCE" >&2
	exit 2
fi
version=$1
want=$2
dest=$3
default_src=$4

log() { echo ">> meilisearch $version: $*"; }
fail() { echo "install-meilisearch: $*" >&2; exit 1; }
sum() { sha256sum "$1" | cut -d' ' -f1; }
version_ok() { [[ $("$1" --version 2>&1 || true) == "meilisearch $version" ]]; }

# A downloaded release binary records its own checksum beside it ($dest.sha256).
if [[ -x $dest ]] && version_ok "$dest" &&
	{ [[ $(sum "$dest") == "$want" ]] || { [[ -f $dest.sha256 ]] && [[ $(sum "$dest") == "$(cat "$dest.sha256")" ]]; }; }; then
	log "already installed at $dest"
	exit 0
fi

if [[ -n ${MEILI_BIN:-} ]]; then
	src=$MEILI_BIN
	[[ -f $src ]] || fail "MEILI_BIN=$src does not exist (unset MEILI_BIN to use $default_src)"
elif [[ -f $default_src ]]; then
	src=$default_src
else
	url=https://github.com/meilisearch/meilisearch/releases/download/v$version/meilisearch-linux-amd64
	log "MEILI_BIN is not set and $default_src does not exist: downloading $url"
	mkdir -p "$(dirname "$dest")"
	dl=$dest.download.$$
	trap 'rm -f "$dl"' EXIT
	curl -fsSL --retry 3 --max-time 300 -o "$dl" "$url" || fail "cannot download $url;
set MEILI_BIN=/path/to/meilisearch (Meilisearch $version, Linux x86-64, sha256 $want)"
	chmod 0755 "$dl"
	got=$(sum "$dl")
	if [[ -n ${MEILI_RELEASE_SHA256:-} ]]; then
		[[ $got == "$MEILI_RELEASE_SHA256" ]] || fail "$url has sha256 $got, want MEILI_RELEASE_SHA256=$MEILI_RELEASE_SHA256"
	else
		log "official release, sha256 $got (set MEILI_RELEASE_SHA256 to pin it)"
	fi
	version_ok "$dl" || fail "$url --version says '$("$dl" --version 2>&1 || true)', want 'meilisearch $version'"
	mv -f "$dl" "$dest"
	echo "$got" >"$dest.sha256"
	log "done: $("$dest" --version)"
	exit 0
fi

got=$(sum "$src")
[[ $got == "$want" ]] || fail "$src has sha256 $got, want $want"
version_ok "$src" || fail "$src --version says '$("$src" --version 2>&1 || true)', want 'meilisearch $version'"

log "installing $src -> $dest"
mkdir -p "$(dirname "$dest")"
tmp=$dest.tmp.$$
trap 'rm -f "$tmp"' EXIT
cp "$src" "$tmp"
chmod 0755 "$tmp"
[[ $(sum "$tmp") == "$want" ]] || fail "the copy $tmp of $src does not match the checksum"
mv -f "$tmp" "$dest"
log "done: $("$dest" --version)"
