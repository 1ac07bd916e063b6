#!/bin/sh
# Models of scripts/dummy_dir/models.json: their paths are relative to this directory.
steps=1
while [ "$#" -gt 0 ]; do
    case "$1" in
        --steps) steps="${2:-$steps}"; shift; [ "$#" -gt 0 ] && shift ;;
        *) shift ;;
    esac
done
echo "model: ${MAD_MODEL_NAME:-dummy_dir} steps: $steps"
echo "performance: $((1000 / steps)) steps_per_second"
