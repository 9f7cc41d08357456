#!/usr/bin/env bash
# Cost of step checkpoints (issue 11): a loop of STEPS steps, each changing one file, in a git
# repository of FILES tracked files. Prints the median and 90th percentile of the `cost_us` each
# `action_finished` record holds (the time of `git add -A` into the run's private index plus
# `git write-tree`), and the whole run's wall time with checkpoints on and off.
#
#   benches/checkpoint.sh [DLOOP_BINARY] [FILES] [STEPS]
set -euo pipefail
bin=${1:-target/release/dloop}
files=${2:-1000}
steps=${3:-100}
bin=$(realpath "$bin")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=b@x GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=b@x
git init -q -b main
mkdir -p src .loops
for i in $(seq 1 "$files"); do echo "file $i" > "src/f$i.txt"; done
printf '.loops/.dloop/\n' > .gitignore
git add -A && git commit -qm files
cat > .loops/touch.yaml <<YAML
initial: touch
limits:
  max_steps: $((steps + 1))
states:
  touch:
    shell: n=\$DLOOP_ITERATION; echo \$n >> src/f\$(( n % $files + 1 )).txt; test \$n -lt $steps
    on: { success: touch, failure: done }
  done:
    terminal: success
YAML
run() {
  local start end
  start=$(date +%s%N)
  "$bin" run touch -q >/dev/null 2>&1 || true
  end=$(date +%s%N)
  echo $(( (end - start) / 1000000 ))
}
off=$(DLOOP_CHECKPOINTS=off run)
on=$(run)
log=$(ls -d .loops/.dloop/runs/*/ | tail -1)events.jsonl
python3 - "$log" "$files" "$off" "$on" <<'PY'
import json, sys
log, files, off, on = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
costs = sorted(r["checkpoint"]["cost_us"] for r in map(json.loads, open(log))
               if r["type"] == "action_finished" and "checkpoint" in r)
n = len(costs)
print(f"{files} tracked files, {n} checkpointed steps")
print(f"checkpoint cost per step: median {costs[n//2]/1000:.2f} ms, p90 {costs[int(n*0.9)]/1000:.2f} ms")
print(f"whole run: checkpoints off {off} ms, on {on} ms ({(on-off)/max(n,1):.2f} ms per step)")
PY
