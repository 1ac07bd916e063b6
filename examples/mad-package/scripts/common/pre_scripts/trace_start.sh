#!/bin/sh
# Pre-script of the `trace` tool. MAD copies it into the run directory and runs it there before the
# model, as `bash trace_start.sh <label>`; it leaves a marker for the post-script.
label=${1:-trace}
date +%s > "${label}_start.txt"
echo "${label}: start (MAD_TRACE=${MAD_TRACE:-unset})"
