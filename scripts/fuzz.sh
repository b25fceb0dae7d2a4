#!/usr/bin/env bash
# Runs every fuzz target of the module for FUZZTIME each (default 30s). `go test` alone (and so `make test`)
# already replays the committed seed corpora under testdata/fuzz/; this script searches for new inputs.
# New failing inputs are written to the package's testdata/fuzz/FuzzXxx/ by go test: commit them with the fix.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-30s}
mapfile -t files < <(git ls-files '*_test.go' | xargs grep -l '^func Fuzz')
for pkg in $(printf '%s\n' "${files[@]}" | xargs -n1 dirname | sort -u); do
	for target in $(go test -list '^Fuzz' "./$pkg" | grep '^Fuzz'); do
		echo ">> fuzz ./$pkg $target ($fuzztime)"
		# A new input is minimized for at most 5 s (Go's default is 60 s, which can take a short run whole
		# when the seeds are large captures).
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime 5s "./$pkg"
	done
done
