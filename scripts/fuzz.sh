#!/usr/bin/env bash
# fuzz.sh [FUZZTIME]: runs every fuzz target of the module (every
# "func FuzzXxx" in a _test.go file) for FUZZTIME each (a duration such as
# 3s, or a count such as 5000x). make test runs it briefly, make soak for
# longer. A target that finds a failure writes the input under its
# package's testdata/fuzz/FuzzXxx/ and the script fails. Minimising a new
# input is bounded to 2s: inputs grown from the large seeds would otherwise
# stall a short run for up to a minute each.
set -euo pipefail
fuzztime=${1:-3s}
cd "$(dirname "$0")/.."
status=0
# count prints how many files the corpus folder $1 holds (0 if none).
count() { if [ -d "$1" ]; then find "$1" -type f | wc -l; else echo 0; fi; }
while IFS= read -r file; do
	dir=$(dirname "$file")
	for name in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$file"); do
		echo "fuzz: $name in $dir for $fuzztime"
		before=$(count "$dir/testdata/fuzz/$name")
		if go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -fuzzminimizetime 2s "$dir" </dev/null; then
			continue
		fi
		after=$(count "$dir/testdata/fuzz/$name")
		if [ "$after" -gt "$before" ]; then
			echo "fuzz: $name found a failing input (see $dir/testdata/fuzz/$name)" >&2
			status=1
			continue
		fi
		# The fuzzing engine can end a run with a bare "context deadline
		# exceeded" and no input (golang/go#75804): try once more.
		echo "fuzz: $name failed without a failing input; running it again" >&2
		go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -fuzzminimizetime 2s "$dir" </dev/null || status=1
	done
done < <(grep -rl --include='*_test.go' '^func Fuzz' . | sort)
exit $status
