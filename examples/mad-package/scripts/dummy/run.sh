#!/bin/sh
# The smallest MAD model: print one performance line.
echo "model: ${MAD_MODEL_NAME:-dummy} gpus: ${MAD_RUNTIME_NGPUS:-0}"
echo "performance: 123.4 samples_per_second"
