"""Host facts: what a machine is (OS, kernel, Docker, GPUs, driver, ROCm/CUDA), observed read-only.

- `HostFacts` (model): the value, recorded with every attempt (`to_json`/`from_json`).
- `probe(run)`, `probe_local()`, `probe_session(session)` (probe): observe a host with one
  constant `sh` script; `FactsCache` observes each host once per command.
- `parse(output)` (parsers): the script's output -> HostFacts, tolerant of any bytes.
- `changed`, `skip_reason`, `perf_gpu_architecture`, `perf_machine_name`, `summary` (compare):
  what the planner, perf.csv and `state show` ask of them.
"""

from madengine.facts.compare import (
    DEFAULT_RERUN_ON,
    FACT_KEYS,
    FactKey,
    change_note,
    changed,
    perf_gpu_architecture,
    perf_machine_name,
    skip_reason,
    summary,
)
from madengine.facts.model import FACT_FIELDS, HostFacts
from madengine.facts.parsers import parse
from madengine.facts.probe import (
    DEFAULT_TOOL_TIMEOUT,
    SCRIPT,
    FactsCache,
    Runner,
    probe,
    probe_argv,
    probe_local,
    probe_session,
    run_local,
    session_runner,
)

__all__ = [
    "DEFAULT_RERUN_ON",
    "DEFAULT_TOOL_TIMEOUT",
    "FACT_FIELDS",
    "FACT_KEYS",
    "SCRIPT",
    "FactKey",
    "FactsCache",
    "HostFacts",
    "Runner",
    "change_note",
    "changed",
    "parse",
    "perf_gpu_architecture",
    "perf_machine_name",
    "probe",
    "probe_argv",
    "probe_local",
    "probe_session",
    "run_local",
    "session_runner",
    "skip_reason",
    "summary",
]
