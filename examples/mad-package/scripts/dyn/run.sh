#!/bin/sh
# Models of scripts/dyn/get_models_json.py: `--size N` is their one parameter.
size=1
while [ "$#" -gt 0 ]; do
    case "$1" in
        --size) size="${2:-$size}"; shift; [ "$#" -gt 0 ] && shift ;;
        *) shift ;;
    esac
done
echo "model: ${MAD_MODEL_NAME:-dyn} size: $size"
echo "performance: $((size / 2)).25 gflops"
