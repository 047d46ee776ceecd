#!/usr/bin/env bash
# After a failed `make e2e`: what each failed scenario said (its panic
# message, the end of its last boot's console), so a CI log that shows only
# the summary lines still shows why. The whole log stays in target/e2e.log,
# every console in target/vm/logs.
set -u
log=${1:-target/e2e.log}
echo "== why: the panics in $log"
grep -n -A3 "panicked at" "$log" | cut -c1-400 | head -n 60
echo "== the end of the failures section"
sed -n '/^failures:$/,/^test result/p' "$log" | cut -c1-400 | tail -n 80
