#!/usr/bin/env bash
# The appliance story (docs/appliance.md) on the image of a USB stick's
# `persistence` partition: keys a person holds. The person is played by a
# password agent speaking the systemd ask-password protocol
# (tests/agents/ask_password_agent.py); what it types is shown. Every
# result is checked with the cryptsetup CLI. The boot itself (console,
# waiting-for-key, remote unlock) is in the VM suite's appliance scenario.
set -euo pipefail
cd "$(dirname "$0")/.."
VOLCTL=$(realpath "${VOLCTL:-target/debug/volctl}")
DIR=${DEMO_DIR:-target/demo-appliance}
rm -rf "$DIR" && mkdir -p "$DIR"
STICK=$DIR/persistence.img
AGENT_PID=
trap '[ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null || true' EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# The person: answers the next questions with these lines, in order.
person() {
  [ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null || true
  rm -rf "$DIR/ask" && mkdir "$DIR/ask"
  printf '%s\n' "$@" > "$DIR/answers"; : > "$DIR/asked"
  python3 tests/agents/ask_password_agent.py "$DIR/ask" "$DIR/answers" "$DIR/asked" &
  AGENT_PID=$!
}
asked() { # what was asked, and what the person typed
  paste -d'|' "$DIR/asked" <(head -n "$(wc -l < "$DIR/asked")" "$DIR/answers") | sed 's/|/  ← typed: /; s/^/  ? /'
}
volctl() { printf '$ volctl %s\n' "$*" | sed "s|$DIR/||g"; VOLCTL_ASK_PASSWORD_DIR=$DIR/ask "$VOLCTL" "$@"; }
opens() { printf '%s' "$2" | cryptsetup open --test-passphrase --key-file - --key-slot "$1" "$STICK" 2>/dev/null; }

truncate -s 64M "$STICK"
cat > "$DIR/appliance.yaml" <<'YAML'
apiVersion: v1alpha1
kind: VolumeConfig
name: persistence
encryption:
  provider: luks2
  pbkdf: {type: argon2id, memoryKiB: 8192, iterations: 4}   # demo-sized; real configs leave it out
  keys:
    - slot: 0
      prompt: {}
    - slot: 9
      recovery: {}
YAML
T=(--volume persistence --device "$STICK" -f "$DIR/appliance.yaml")

say "first boot: the passphrase is asked twice, the recovery key handed over once"
person "correct horse battery" "correct horse battery"
volctl converge "${T[@]}" --recovery-key-out "$DIR/recovery.txt"
asked
KEY=$(sed 's/.* //' "$DIR/recovery.txt")
echo "  recovery.txt (0600): $(stat -c %a "$DIR/recovery.txt"), holds $(cut -c1-24 "$DIR/recovery.txt")…"
opens 0 "correct horse battery" && opens 9 "$KEY" && echo "  cryptsetup: the passphrase opens slot 0, the recovery key slot 9"

say "daily boot: one answer, one KDF run, nothing written"
SUM=$(sha256sum < "$STICK")
person "correct horse battery"
volctl plan "${T[@]}"
asked

say "three wrong answers: waiting for the key, nothing written"
person "wrong one" "wrong two" "wrong three"
volctl plan "${T[@]}" || true
asked
[ "$(sha256sum < "$STICK")" = "$SUM" ] && echo "  the image is byte-identical"

say "passphrase forgotten: the recovery key, typed sloppily (lower case, spaces); a typo costs no KDF run"
TYPO="${KEY:0:3}$( [ "${KEY:3:1}" = A ] && echo B || echo A )${KEY:4}"
person "$TYPO" "$(echo "$KEY" | tr 'A-Z-' 'a-z ')"
volctl plan "${T[@]}"
asked

say "a new passphrase (a spare slot holds it while slot 0 is replaced: safe under a power cut)"
person "$KEY" "staple correct 2" "staple correct 2"
volctl passphrase change "${T[@]}"
asked
opens 0 "staple correct 2" && ! opens 0 "correct horse battery" && echo "  cryptsetup: the new passphrase opens slot 0, the old one nothing"

say "a new recovery key, handed over before it is enrolled"
person "staple correct 2"
volctl recovery-key rotate "${T[@]}" --recovery-key-out "$DIR/recovery-2.txt"
NEWKEY=$(sed 's/.* //' "$DIR/recovery-2.txt")
opens 9 "$NEWKEY" && ! opens 9 "$KEY" && echo "  cryptsetup: the new recovery key opens slot 9, the old one nothing"
say "appliance demo finished"
