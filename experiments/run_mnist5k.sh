#!/usr/bin/env bash
# Runs the mnist5k results experiments one after another (niced, no W&B) and records each
# run's wall time: experiments/run_mnist5k.sh mnist5k_markov mnist5k_fvsbn ...
# Run dirs: outputs/mnist5k/<name>; wall times: outputs/mnist5k/times.tsv.
# Orderless runs report the protocol themselves; nade-eval run_dir=... num_orderings=128 for K = 128.
set -u
cd "$(dirname "$0")/.."
mkdir -p outputs/mnist5k
for name in "$@"; do
  start=$(date +%s)
  nice -n 10 nade-train experiment="$name" logger=none trainer.progress=false \
    hydra.run.dir="outputs/mnist5k/$name" > "outputs/mnist5k/$name.log" 2>&1
  rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$(( $(date +%s) - start ))" "$rc" "$(date -u +%H:%M:%S)" >> outputs/mnist5k/times.tsv
done
