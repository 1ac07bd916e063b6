#!/usr/bin/env bash
# MAD run protocol: madengine runs `bash run.sh <args>` in a copy of this directory.
set -euo pipefail
cd "$(dirname "$0")"
exec python3 matmul.py "$@"
