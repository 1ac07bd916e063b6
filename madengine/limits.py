"""Budgets on hostile or runaway input: every one is a config error, never a hang or an exhaustion.

Limits that bite before a madfile is parsed (the size of a file, the expansion of its YAML aliases,
its nesting) cannot come from the madfile itself: the sizes are set by environment variables, the
structural limits are fixed. Limits that bite later (jobs, the time a package's get_models_json.py
may take) are the madfile's `limits:` (madengine.madfile.model.Limits).
"""

from __future__ import annotations

import os

from madengine.errors import ConfigError
from madengine.files import NotAFileError, open_file

MB = 1024 * 1024

# A madfile is hand-written; ruamel's pure-Python parser reads dense YAML at a few hundred KB/s, so a
# bigger one could not be accepted or refused within a second (bench/bench_hostile.py).
MADFILE_BYTES_ENV = "MADENGINE_MAX_MADFILE_BYTES"
DEFAULT_MADFILE_BYTES = 64 * 1024
# Each models.json (and a get_models_json.py's answer): parsed by the C JSON decoder (6,134 models are ~2 MB).
INPUT_BYTES_ENV = "MADENGINE_MAX_INPUT_BYTES"
DEFAULT_INPUT_BYTES = 8 * MB
# tools.json and data.json: real ones are tens of KB (ROCm madengine's tools.json ~20 KB), and each of
# their entries costs more than a model (a position per message, args split as a shell would), so 8 MB
# of them took 1.0-1.4 s and one 8 MB `args` 278 MB (bench/bench_hostile.py).
TOOLS_DATA_BYTES_ENV = "MADENGINE_MAX_TOOLS_DATA_BYTES"
DEFAULT_TOOLS_DATA_BYTES = 1 * MB

# YAML values after aliases are expanded (`*a` and `<<: *a` count every value they copy).
MAX_YAML_VALUES = 200_000
# Nesting of mappings and lists, in a madfile and in JSON files; real files need fewer than 10 levels.
MAX_DEPTH = 64

# Models of one MAD package (all its models.json files and scripts together): each costs ~1 KB and
# tens of microseconds, and 8 MB of the smallest entries would be 600,000 of them. The largest real
# packages have a few thousand.
MODELS_ENV = "MADENGINE_MAX_MODELS"
DEFAULT_MODELS = 20_000

# Tools of a tools.json, and data names and their providers in a data.json: real files have tens. Each
# costs ~15 µs to read; 1 MB (their size limit) holds 44,000 of the smallest tools or 28,000 data names,
# so this still bites first (bench/bench_hostile.py: 10,000 of them, however filled, take under 1 s).
MAX_JSON_ENTRIES = 10_000
# Errors of one models.json, tools.json or data.json before the rest of it is not read: a broken file
# of thousands of entries is fixed from its first errors, and printing them all takes longer than reading.
MAX_ERRORS_PER_FILE = 100

# Jobs a madfile may compile to (`limits.jobs`), counted before they are built. The costliest are jobs of
# distinct models (~13 us each per model and context, on top of the ~0.8 s that validating a package of
# the most models takes): 25,000 of them, a package of 20,000 models in one context and 5,000 of them in
# another, take ~0.9 s CPU and ~105 MB (bench/bench_hostile.py). Jobs of one model (params, repeat) cost
# ~5 us: 100,000 of those would fit.
DEFAULT_JOBS = 25_000
# Characters of job addresses (`job:<model>[params]@<context>/<target>#<repeat>`) per job of that limit,
# on average: an address is held twice while compiling (the model's key, the job's address), so a
# 64 KB madfile of long param values must not make 100,000 addresses of 6 KB each (1.3 GB, 2 s).
ADDRESS_CHARS_PER_JOB = 160
SCRIPT_TIMEOUT_ENV = "MADENGINE_SCRIPT_TIMEOUT"
DEFAULT_SCRIPT_TIMEOUT = 30.0
# A day: far beyond any listing of models, and within what a selector's timeout can be given.
MAX_SCRIPT_TIMEOUT = 86400.0


def _env_number(name: str, default: float, *, integer: bool, maximum: float | None = None) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = -1
    if not value > 0 or value == float("inf") or (maximum is not None and value > maximum):
        kind = "a whole number" if integer else "a finite number of seconds"
        most = f" and at most {maximum:g}" if maximum is not None else ""
        raise ConfigError(f"{name}={raw!r} is not {kind} above 0{most}",
                          hint=f"unset {name} for the default ({default:g})")
    return value


def madfile_bytes() -> int:
    return int(_env_number(MADFILE_BYTES_ENV, DEFAULT_MADFILE_BYTES, integer=True))


def input_bytes() -> int:
    return int(_env_number(INPUT_BYTES_ENV, DEFAULT_INPUT_BYTES, integer=True))


def tools_data_bytes() -> int:
    return int(_env_number(TOOLS_DATA_BYTES_ENV, DEFAULT_TOOLS_DATA_BYTES, integer=True))


def models() -> int:
    return int(_env_number(MODELS_ENV, DEFAULT_MODELS, integer=True))


def script_timeout(configured: float | None = None) -> float:
    """Seconds a get_models_json.py may run: the madfile's `limits.script_timeout`, else the
    environment's MADENGINE_SCRIPT_TIMEOUT, else 30; at most a day (MAX_SCRIPT_TIMEOUT)."""
    if configured is not None:
        return configured
    return _env_number(SCRIPT_TIMEOUT_ENV, DEFAULT_SCRIPT_TIMEOUT, integer=False, maximum=MAX_SCRIPT_TIMEOUT)


def size_text(n: int) -> str:
    return f"{n / MB:.1f} MB" if n >= MB else f"{n / 1024:.0f} KB" if n >= 1024 else f"{n} bytes"


def read_bounded(path: str | os.PathLike[str], shown: str, limit: int, env: str) -> bytes:
    """The bytes of `path`, refused before reading (and parsing) when larger than `limit`.

    Anything but a regular file (a FIFO would hang the read) is refused before it is opened.
    OSError (a missing file...) is the caller's to report.
    """
    try:
        fd = open_file(path)
    except NotAFileError as exc:
        raise ConfigError(f"{shown} is {exc.what}", file=shown,
                          hint=f"{os.path.basename(shown)} must be a file (not a FIFO, socket or device)") from None
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise too_big(shown, size, limit, env)
        raw = f.read(limit + 1)  # a file that grows while read stops here
    if len(raw) > limit:
        raise too_big(shown, len(raw), limit, env, at_least=True)
    return raw


def too_big(shown: str, size: int, limit: int, env: str, *, at_least: bool = False) -> ConfigError:
    more = "more than " if at_least else ""
    size_shown, limit_shown = size_text(size), size_text(limit)
    if size_shown == limit_shown:  # just over: "1.0 MB; the limit is 1.0 MB" would not say why
        size_shown, limit_shown = f"{size:,} bytes", f"{limit:,} bytes"
    return ConfigError(f"{shown} is {more}{size_shown}; the limit is {limit_shown}", file=shown,
                       hint=f"set {env} (in bytes) to raise it")

# A perf.csv (ROCm madengine appends to it run after run): read whole by `report to-html`, `database
# update-table` and `upload-mongodb`. 64 MB is ~200,000 rows, years of nightly runs of a large package.
PERF_CSV_BYTES_ENV = "MADENGINE_MAX_PERF_CSV_BYTES"
DEFAULT_PERF_CSV_BYTES = 64 * MB


# A history file of `results export --format json` (`results import` reads it whole, then parses it):
# ~1 KB per attempt, so 64 MB is some 60,000 attempts, a team's years of nightly applies.
HISTORY_BYTES_ENV = "MADENGINE_MAX_HISTORY_BYTES"
DEFAULT_HISTORY_BYTES = 64 * MB


def history_bytes() -> int:
    return int(_env_number(HISTORY_BYTES_ENV, DEFAULT_HISTORY_BYTES, integer=True))


def perf_csv_bytes() -> int:
    return int(_env_number(PERF_CSV_BYTES_ENV, DEFAULT_PERF_CSV_BYTES, integer=True))
