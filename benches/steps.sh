#!/usr/bin/env bash
# Whole-process budget of DESIGN.md section 11: a 1,000-step loop of trivial shell actions
# (`true`) run by the release binary, against the floor measured in the same run: 1,000 times
# (spawn `bash -c true` + one fdatasync of a 600-byte append), which is what any durable runner
# must pay per step. Prints both times and the ratio (budget: at most 1.05).
#
# Usage: benches/steps.sh [STEPS] [ROUNDS]   (defaults 1000 and 5; the medians are compared)
# Needs: a release build (`cargo build --release -p dloop-cli`), python3 for the floor's fsync.
set -euo pipefail

steps="${1:-1000}"
rounds="${2:-5}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dloop="${CARGO_TARGET_DIR:-$root/target}/release/dloop"
[ -x "$dloop" ] || { echo "build it first: cargo build --release -p dloop-cli" >&2; exit 2; }

work="$(mktemp -d "${TMPDIR:-/tmp}/dloop-steps.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/.loops"
cat > "$work/.loops/steps.yaml" <<YAML
initial: step
limits:
  max_steps: $((steps + 1))
states:
  step:
    shell: "true"
    on: { success: step, _: failed }
  failed:
    terminal: failure
YAML

now_ms() { date +%s%3N; }

# The floor: the same number of spawns and fdatasyncs, in one process tree, nothing else.
floor_once() {
  python3 - "$steps" "$work/floor.log" <<'PY'
import os, subprocess, sys
n, path = int(sys.argv[1]), sys.argv[2]
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
line = b"x" * 599 + b"\n"
for _ in range(n):
    subprocess.run(["bash", "-c", "true"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    os.write(fd, line)
    os.fdatasync(fd)
os.close(fd)
PY
}

dloop_once() {
  (cd "$work" && "$dloop" run steps >/dev/null 2>&1) || [ $? -eq 3 ]
  rm -rf "$work/.loops/.dloop"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

floors=() runs=()
for _ in $(seq "$rounds"); do
  t0=$(now_ms); floor_once; t1=$(now_ms); floors+=($((t1 - t0)))
  t0=$(now_ms); dloop_once; t1=$(now_ms); runs+=($((t1 - t0)))
done
floor=$(printf '%s\n' "${floors[@]}" | median)
run=$(printf '%s\n' "${runs[@]}" | median)
echo "steps: $steps, rounds: $rounds (interleaved), medians"
echo "floor (spawn + fdatasync per step): ${floor} ms   [${floors[*]}]"
echo "dloop run:                           ${run} ms   [${runs[*]}]"
awk -v r="$run" -v f="$floor" 'BEGIN { printf "ratio: %.3fx (budget 1.05x)\n", r / f }'
