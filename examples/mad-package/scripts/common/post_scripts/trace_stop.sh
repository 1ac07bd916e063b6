#!/bin/sh
# Post-script of the `trace` tool: runs in the run directory after the model, as `bash trace_stop.sh <label>`.
label=${1:-trace}
if [ -f "${label}_start.txt" ]; then
    echo "${label}: stop after $(( $(date +%s) - $(cat "${label}_start.txt") )) s"
else
    echo "${label}: stop (no start marker)"
fi
