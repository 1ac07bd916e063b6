#!/bin/sh
# MAD run protocol: madengine runs `bash run.sh <args>` in a copy of this directory, on the host that it
# placed the job on; the last `performance:` line is the result.
set -eu
loops=100000
while [ $# -gt 0 ]; do
  case $1 in
    --loops) loops=$2; shift 2 ;;
    *) shift ;;
  esac
done
echo "host: $(hostname) model: ${MAD_MODEL_NAME:-count} loops: $loops"
start=$(date +%s%N)
awk -v n="$loops" 'BEGIN { s = 0; for (i = 0; i < n; i++) s += i; if (s < 0) print s }'
end=$(date +%s%N)
awk -v n="$loops" -v ns="$((end - start))" 'BEGIN { printf "performance: %.1f loops_per_ms\n", n / (ns / 1e6 + 0.001) }'
