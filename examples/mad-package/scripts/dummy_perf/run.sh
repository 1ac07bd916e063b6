#!/bin/sh
# A model with parameters: `--batch_size N --iterations N` (models.json args, then tag args such as
# `dummy_perf:batch_size=64`, so a later value wins).
batch_size=1
iterations=1
while [ "$#" -gt 0 ]; do
    case "$1" in
        --batch_size) batch_size="${2:-$batch_size}"; shift; [ "$#" -gt 0 ] && shift ;;
        --batch_size=*) batch_size="${1#*=}"; shift ;;
        --iterations) iterations="${2:-$iterations}"; shift; [ "$#" -gt 0 ] && shift ;;
        --iterations=*) iterations="${1#*=}"; shift ;;
        *) echo "ignoring unknown argument: $1"; shift ;;
    esac
done
i=0
while [ "$i" -lt "$iterations" ]; do
    i=$((i + 1))
done
echo "batch_size: $batch_size iterations: $iterations"
# Throughput grows with the batch size, so a parameter sweep shows distinct results.
echo "performance: $((batch_size * 4)).5 samples_per_second"
