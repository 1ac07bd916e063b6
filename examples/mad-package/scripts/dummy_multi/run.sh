#!/bin/sh
# A model with several results: a CSV `model,performance,metric`, one row each, named
# `dummy_multi_<row model>` by madengine. MAD_OUTPUT_CSV names the file models.json declares.
out="${MAD_OUTPUT_CSV:-perf_dummy_multi.csv}"
{
    echo "model,performance,metric"
    echo "small,210.5,samples_per_second"
    echo "large,48.25,samples_per_second"
} > "$out"
echo "wrote $out"
echo "performance: 210.5 samples_per_second"
