#!/usr/bin/env bash
# make demo: serve three sample mailboxes over POP3S on 127.0.0.1, migrate
# them into ./demo-out with the real pipeline, run again to show that
# nothing is downloaded twice, and print the report and the journal status.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
rm -rf demo-out demo-state
mkdir -p bin demo-state
$GO build -o bin/demoserver ./internal/cmd/demoserver
bin/demoserver -mailboxes testdata/demo -state demo-state &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  [ -f demo-state/ready ] && break
  kill -0 $server 2>/dev/null || { echo "demo: the sample server failed to start" >&2; exit 1; }
  sleep 0.1
done
[ -f demo-state/ready ] || { echo "demo: the sample server did not get ready in 10s" >&2; exit 1; }

run() {
  bin/popmigrate run --accounts demo-state/accounts.csv --ca-file demo-state/ca.pem \
    --journal demo-state/journal.db --to 'maildir:demo-out/{user}' "$@"
}
echo
echo "== 1. migrate three mailboxes into ./demo-out (Maildir)"
echo "\$ popmigrate run --accounts demo-state/accounts.csv --ca-file demo-state/ca.pem --journal demo-state/journal.db --to 'maildir:demo-out/{user}'"
run
echo
echo "== 2. run again: everything is already stored, nothing is downloaded twice"
run
echo
echo "== 3. what the journal says"
echo "\$ popmigrate status --journal demo-state/journal.db"
bin/popmigrate status --journal demo-state/journal.db
echo
echo "== 4. what is on disk"
for d in demo-out/*/; do
  printf '%s: %s messages in new/\n' "$d" "$(find "$d/new" -type f | wc -l)"
done
