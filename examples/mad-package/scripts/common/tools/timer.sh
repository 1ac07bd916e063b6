#!/bin/sh
# Wrapper of the `timer` tool: `sh ../scripts/common/tools/timer.sh -- <command...>`, run from the run
# directory (a child of the package root, hence `../`). Runs the command, reports its wall time, and
# keeps its exit status.
[ "${1:-}" = "--" ] && shift
start=$(date +%s)
"$@"
status=$?
echo "timer: $(( $(date +%s) - start )) s, exit status $status"
exit "$status"
