#!/usr/bin/env python3
"""Hostile-input benchmark: the worst inputs just under each budget are accepted or refused in time.

Every input up to the size limits must be accepted or refused within 1 s and 200 MB (issue 7, §3).
This writes one project per case into a temporary directory, each as close to a limit as it can be
(a madfile just under its size limit, aliases expanding to just under the value budget, a params
matrix of just under the job limit, models.json files of just under 8 MB, tools.json and data.json
files of just under 1 MB...), runs the real
`madengine validate` in it as a child process, and prints the median wall time and peak RSS against
1 s / 200 MB with PASS/FAIL, and the exit code (0 accepted, 5 refused; anything else is an error).

    python bench/bench_hostile.py [--runs 3] [--only CASE ...] [--madengine CMD] [--keep DIR]

Standard library only. Exit status: 0 when every case is within budget and exits 0 or 5, else 1.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shlex
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from bench_core import last_line
from bench_core import run_once as run_child

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

MB = 1024 * 1024
TIME_BUDGET_S = 1.0
RSS_BUDGET_MB = 200.0
MADFILE_LIMIT = 64 * 1024  # madengine.limits.DEFAULT_MADFILE_BYTES
INPUT_LIMIT = 8 * MB  # madengine.limits.DEFAULT_INPUT_BYTES
YAML_VALUES = 200_000  # madengine.limits.MAX_YAML_VALUES
DEPTH = 64  # madengine.limits.MAX_DEPTH
JOBS = 25_000  # madengine.limits.DEFAULT_JOBS
ADDRESS_CHARS = 160  # madengine.limits.ADDRESS_CHARS_PER_JOB
MODELS = 20_000  # madengine.limits.DEFAULT_MODELS

Files = dict[str, str]


def _fill(head: str, line: Callable[[int], str], tail: str = "", limit: int = MADFILE_LIMIT) -> str:
    """`head`, then as many `line(i)` as fit under `limit` bytes with `tail`."""
    parts, size, i = [head], len(head) + len(tail), 0
    while True:
        piece = line(i)
        if size + len(piece) > limit - 16:
            break
        parts.append(piece)
        size += len(piece)
        i += 1
    return "".join(parts) + tail


MODEL = "models:\n  - {name: m, scripts: run.sh}\n"


def dense_keys() -> Files:  # the slowest YAML to parse per byte: many tiny keys (an unknown key: refused)
    return {"madfile.yaml": _fill("version: 1\nx:\n", lambda i: f"  k{i}: v\n")}


def dense_env() -> Files:  # the same, but valid: an env mapping of a context is accepted
    return {"madfile.yaml": _fill(f"version: 1\n{MODEL}contexts:\n  c:\n    docker_env_vars:\n",
                                  lambda i: f"      K{i}: v\n")}


def long_string() -> Files:
    return {"madfile.yaml": "version: 1\nname: " + "x" * (MADFILE_LIMIT - 40) + "\n"}


def many_models() -> Files:  # inline models just under the size limit, each a job
    return {"madfile.yaml": _fill("version: 1\nmodels:\n", lambda i: f"  - {{name: m{i}, scripts: run.sh}}\n")}


def many_runs() -> Files:  # runs naming models one by one: name lookups, not scans
    models = "".join(f"  - {{name: m{i}, scripts: run.sh}}\n" for i in range(1000))
    return {"madfile.yaml": _fill(f"version: 1\nmodels:\n{models}runs:\n", lambda i: f"  - {{models: [m{i}]}}\n")}


def flow_nesting() -> Files:  # refused at level 65
    half = (MADFILE_LIMIT - 40) // 2
    return {"madfile.yaml": "version: 1\nname: " + "[" * half + "]" * half + "\n"}


def block_nesting() -> Files:
    return {"madfile.yaml": "version: 1\nx:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 70))}


def laughs() -> Files:  # 10 x 10 x 10 x 10 x 10: just under the 200,000-value budget (accepted as data)
    lines = ["version: 1", "x:", "  a: &a [" + ", ".join(["lol"] * 10) + "]"]
    for prev, name in zip("abcd", "bcde", strict=True):
        lines.append(f"  {name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    return {"madfile.yaml": "\n".join(lines) + "\n"}


def laughs_over() -> Files:  # the classic 9 levels: refused at once
    lines = ["version: 1", "a: &a [" + ", ".join(["lol"] * 9) + "]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return {"madfile.yaml": "\n".join(lines) + "\n"}


def merges() -> Files:  # `<<: *big` of 100-key mappings, to just under the budget, in a context's env
    base = "    base: &x0 {" + ", ".join(f"K{i}: v" for i in range(100)) + "}\n"
    levels = "".join(f"    l{n}: &x{n}\n" + "".join(f"      m{j}: {{<<: *x{n - 1}, Z: v}}\n" for j in range(10))
                     for n in range(1, 3))
    return {"madfile.yaml": f"version: 1\n{MODEL}contexts:\n  c:\n    match:\n      k: v\nanchors:\n{base}{levels}"
                            + "".join(f"    r{k}: *x2\n" for k in range(17))}


def repeat_at_limit() -> Files:
    return {"madfile.yaml": f"version: 1\n{MODEL}runs:\n  - {{models: [m], repeat: {JOBS}}}\n", "run.sh": ""}


def repeat_over() -> Files:
    return {"madfile.yaml": f"version: 1\n{MODEL}runs:\n  - {{models: [m], repeat: 10000000}}\n"}


MATRIX = (5, 5, 10, 10, 10)  # values per param: 25,000 combinations (JOBS)


def matrix_at_limit() -> Files:
    params = ", ".join(f"p{i}: [{', '.join(map(str, range(n)))}]" for i, n in enumerate(MATRIX))
    return {"madfile.yaml": f"version: 1\nmodels:\n  - {{name: m, scripts: run.sh, params: {{{params}}}}}\n",
            "run.sh": ""}


def matrix_long_at_limit() -> Files:  # JOBS combinations whose addresses use up their budget (~160 characters)
    width = (ADDRESS_CHARS - 42) // 5  # `job:m[p0=...,p4=...]@default/local#1`: 42 characters besides the values
    params = ", ".join(f"p{i}: [" + ", ".join(f"{d}" + "v" * (width - 1) for d in range(n)) + "]"
                       for i, n in enumerate(MATRIX))
    return {"madfile.yaml": f"version: 1\nmodels:\n  - {{name: m, scripts: run.sh, params: {{{params}}}}}\n",
            "run.sh": ""}


def matrix_over() -> Files:  # 10^9 combinations
    params = ", ".join(f"p{i}: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]" for i in range(9))
    return {"madfile.yaml": f"version: 1\nmodels:\n  - {{name: m, scripts: run.sh, params: {{{params}}}}}\n"}


PACKAGE_MADFILE = "version: 1\npackage: pkg\nmodels: [{select: all}]\n"


def _models_json(entry: Callable[[int], str]) -> str:
    return _fill("[\n", lambda i: ("" if i == 0 else ",\n") + entry(i), "\n]\n", limit=INPUT_LIMIT)


def models_json_valid() -> Files:  # as many real-looking entries as fit in 8 MB, all selected
    return {"madfile.yaml": PACKAGE_MADFILE, "pkg/models.json": _models_json(
        lambda i: json.dumps({"name": f"m{i}", "dockerfile": "docker/d", "scripts": "run.sh", "n_gpus": "1",
                              "tags": ["t"], "args": "--x 1"})),
            "pkg/docker/d.ubuntu.none.Dockerfile": "FROM ubuntu\n", "pkg/run.sh": ""}


def models_json_at_limit() -> Files:  # the most models a package may have, all selected: 20,000 jobs
    entries = ",\n".join(json.dumps({"name": f"m{i}", "dockerfile": "docker/d", "scripts": "run.sh", "n_gpus": "1",
                                      "tags": ["t"], "args": "--x 1"}) for i in range(MODELS))
    return {"madfile.yaml": PACKAGE_MADFILE, "pkg/models.json": f"[\n{entries}\n]\n",
            "pkg/docker/d.ubuntu.none.Dockerfile": "FROM ubuntu\n", "pkg/run.sh": ""}


def package_at_limit() -> Files:  # the costliest jobs: each of a distinct model (20,000 models, 5,000 of them twice)
    twice = JOBS - MODELS
    entries = ",\n".join(json.dumps({"name": f"m{i}", "dockerfile": "docker/d", "scripts": "run.sh", "n_gpus": "1",
                                      "tags": ["t", "h"] if i < twice else ["t"], "args": "--x 1"})
                          for i in range(MODELS))
    madfile = (PACKAGE_MADFILE + "contexts:\n  a: {gpu_vendor: NONE}\n  b: {gpu_vendor: NONE}\n"
               "runs:\n  - {models: [all], contexts: [a]}\n  - {models: [h], contexts: [b]}\n")
    return {"madfile.yaml": madfile, "pkg/models.json": f"[\n{entries}\n]\n",
            "pkg/docker/d.ubuntu.none.Dockerfile": "FROM ubuntu\n", "pkg/run.sh": ""}


def models_json_tiny() -> Files:  # the most entries per byte, each invalid: every error is reported
    return {"madfile.yaml": PACKAGE_MADFILE, "pkg/models.json": _models_json(lambda i: '{"name": "m"}')}


def models_json_string() -> Files:
    return {"madfile.yaml": PACKAGE_MADFILE,
            "pkg/models.json": '[{"name": "m", "dockerfile": "d", "scripts": "s", "args": "'
                               + "x" * (INPUT_LIMIT - 100) + '"}]'}


def models_json_deep() -> Files:  # nesting just under the limit, repeated to fill 8 MB
    deep = '{"name": "m", "x": ' + "[" * (DEPTH - 3) + "]" * (DEPTH - 3) + "}"
    return {"madfile.yaml": PACKAGE_MADFILE, "pkg/models.json": _models_json(lambda i: deep)}


# A package of one valid model, so that a valid tools.json or data.json is accepted (exit 0).
ONE_MODEL = {"madfile.yaml": PACKAGE_MADFILE,
             "pkg/models.json": '[{"name": "m", "dockerfile": "d", "scripts": "run.sh"}]',
             "pkg/run.sh": "", "pkg/d.Dockerfile": "FROM scratch\n"}
TOOLS_DATA_LIMIT = 1 * MB  # madengine.limits.DEFAULT_TOOLS_DATA_BYTES: each tools.json and data.json
JSON_ENTRIES = 10_000  # madengine.limits.MAX_JSON_ENTRIES: tools of a tools.json, data names and providers
ENTRY = (TOOLS_DATA_LIMIT - 256) // JSON_ENTRIES - 2  # JSON_ENTRIES entries of this many bytes (and ",\n"): just under


def _padded(entry: Callable[[int, str], str]) -> list[str]:
    """JSON_ENTRIES entries `entry(i, pad)`, each padded to ENTRY bytes (`pad` a run of x)."""
    entries = [entry(i, "x" * (ENTRY - len(entry(i, "")))) for i in range(JSON_ENTRIES)]
    assert all(len(e) == ENTRY for e in entries), "an entry does not fit under the size limit"
    return entries


def _tools_json(entries: list[str]) -> Files:
    return {**ONE_MODEL,
            "pkg/scripts/common/tools.json": '{"tools": {\n' + ",\n".join(entries) + "\n}}\n"}


def tools_json() -> Files:  # the most tools per byte (refused: more than the entry limit)
    return {**ONE_MODEL,
            "pkg/scripts/common/tools.json": _fill('{"tools": {\n', lambda i: ("" if i == 0 else ",\n")
                                                   + f'"t{i}": {{"cmd": "x"}}', "\n}}\n", limit=TOOLS_DATA_LIMIT)}


def tools_json_at_limit() -> Files:  # the most tools a tools.json may have, as big as fits, all valid
    return _tools_json(_padded(lambda i, pad: f'"t{i}": {{"cmd": "x", "env_vars": {{"V": "v"}}, "pre_scripts": '
                                              f'[{{"path": "p.sh", "args": "{pad}"}}]}}'))


def tools_json_wrong() -> Files:  # as many tools, each with four errors and an unknown key: a position each
    wrong = '"cmd": 2, "env_vars": 3, "pre_scripts": 4, "post_scripts": 5'
    return _tools_json(_padded(lambda i, pad: f'"t{i}": {{"x": "{pad}", {wrong}}}'))


UNKNOWN = ", ".join(f'"x{k}": 0' for k in range(8))  # eight unknown keys: a warning each (data) or per key (tools)


def tools_json_unknown() -> Files:  # as many tools, valid, with unknown keys: a position per tool and key
    return _tools_json(_padded(lambda i, pad: f'"t{i}": {{"x": "{pad}", {UNKNOWN}, "cmd": "c"}}'))


def tools_json_args() -> Files:  # one script's `args` filling the file: words, split as a shell would
    words = "ab " * ((TOOLS_DATA_LIMIT - 200) // 3)
    return _tools_json(['"t": {"pre_scripts": [{"path": "p.sh", "args": "' + words + '"}]}'])


def _data_json(entries: list[str]) -> Files:
    return {**ONE_MODEL,
            "pkg/data.json": "{\n" + ",\n".join(entries) + "\n}\n"}


def data_json() -> Files:  # the most data names per byte (refused: more than the entry limit)
    files = _data_json([])
    files["pkg/data.json"] = _fill(
        "{\n", lambda i: ("" if i == 0 else ",\n") + f'"d{i}": {{"local": {{"path": "/d"}}}}',
                                   "\n}\n", limit=TOOLS_DATA_LIMIT)
    return files


def data_json_wrong() -> Files:  # the most data names a data.json may have, five errors each
    wrong = '"path": 2, "home": 3, "mirrorlocal": 4, "readwrite": 5, "args": 6'
    return _data_json(_padded(lambda i, pad: f'"d{i}": {{"local": {{"x": "{pad}", {wrong}}}}}'))


def data_json_unknown() -> Files:  # as many data names, valid, with as many unknown keys as fit (six)
    unknown = ", ".join(f'"x{k}": 0' for k in range(6))
    return _data_json(_padded(lambda i, pad: f'"d{i}": {{"local": {{"x": "{pad}", {unknown}, "path": "/d"}}}}'))


CASES: dict[str, tuple[str, Callable[[], Files]]] = {
    "dense_keys": ("madfile: 64 KB of tiny keys", dense_keys),
    "dense_env": ("madfile: 64 KB of env vars (valid)", dense_env),
    "long_string": ("madfile: one 64 KB string", long_string),
    "many_models": ("madfile: 64 KB of inline models", many_models),
    "many_runs": ("madfile: 64 KB of runs", many_runs),
    "flow_nesting": ("madfile: 64 KB of [[[...", flow_nesting),
    "block_nesting": ("madfile: 69 levels of keys", block_nesting),
    "laughs": ("aliases: 10^5 values", laughs),
    "laughs_over": ("aliases: 9^9 (billion laughs)", laughs_over),
    "merges": ("aliases: `<<:` of big maps", merges),
    "repeat_at_limit": (f"jobs: repeat {JOBS:,}", repeat_at_limit),
    "repeat_over": ("jobs: repeat 10,000,000", repeat_over),
    "matrix_at_limit": (f"jobs: params {JOBS:,}", matrix_at_limit),
    "matrix_long_at_limit": (f"jobs: params {JOBS:,}, long values", matrix_long_at_limit),
    "package_at_limit": (f"jobs: {JOBS:,} of 20,000 models", package_at_limit),
    "matrix_over": ("jobs: params 10^9", matrix_over),
    "models_json_at_limit": ("models.json: 20,000 models", models_json_at_limit),
    "models_json_valid": ("models.json: 8 MB valid", models_json_valid),
    "models_json_tiny": ("models.json: 8 MB tiny entries", models_json_tiny),
    "models_json_string": ("models.json: one 8 MB string", models_json_string),
    "models_json_deep": ("models.json: 8 MB, 61 deep", models_json_deep),
    "tools_json": ("tools.json: 1 MB of tiny tools", tools_json),
    "tools_json_at_limit": (f"tools.json: {JSON_ENTRIES:,} tools, valid", tools_json_at_limit),
    "tools_json_wrong": (f"tools.json: {JSON_ENTRIES:,} tools, wrong", tools_json_wrong),
    "tools_json_unknown": (f"tools.json: {JSON_ENTRIES:,}, unknown keys", tools_json_unknown),
    "tools_json_args": ("tools.json: one 1 MB args", tools_json_args),
    "data_json": ("data.json: 1 MB of tiny names", data_json),
    "data_json_wrong": (f"data.json: {JSON_ENTRIES:,} names, wrong", data_json_wrong),
    "data_json_unknown": (f"data.json: {JSON_ENTRIES:,}, unknown keys", data_json_unknown),
}


def write(root: Path, files: Files) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def write_case(key: str, root: str) -> int:
    """Write case `key` into `root` (emptied first); the size of its biggest file. Run in a worker process:
    Linux gives a child the peak RSS of the process that started it as its own, so a bench that had held
    an 8 MB input would report every later case at no less than that."""
    shutil.rmtree(root, ignore_errors=True)
    files = CASES[key][1]()
    write(Path(root), files)
    return max(len(text.encode()) for text in files.values())


def run_once(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> tuple[float, float, float, int, str]:
    """(wall seconds, CPU seconds, max RSS in MB, exit code, last line of stderr) of one child process."""
    sample = run_child(cmd, cwd, env, timeout)
    return (sample.seconds, sample.cpu_seconds, sample.max_rss_bytes / MB, sample.returncode,
            last_line(sample.stderr)[:150])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Worst inputs just under madengine's budgets, timed.")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per case (default 3)")
    parser.add_argument("--only", nargs="+", choices=sorted(CASES), metavar="CASE", help="only these cases")
    parser.add_argument("--madengine", metavar="CMD", help="command to run madengine (default: python -m "
                        "madengine with this checkout first on PYTHONPATH)")
    parser.add_argument("--timeout", type=float, default=60.0, help="per-run timeout in seconds")
    parser.add_argument("--cpu", action="store_true", help="judge the time budget on CPU time (user + system) "
                        "instead of wall time: for a loaded machine, where wall time measures the neighbours")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="write the cases here and keep them")
    args = parser.parse_args(argv)

    env = dict(os.environ, NO_COLOR="1", MADENGINE_CACHE_DIR="")
    if args.madengine:
        prefix = shlex.split(args.madengine)
    else:
        prefix = [sys.executable, "-m", "madengine"]
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    out_dir = args.keep.resolve() if args.keep else Path(tempfile.mkdtemp(prefix="madengine-hostile-"))
    print(f"madengine: {shlex.join(prefix)}; budgets {TIME_BUDGET_S:g} s ({'CPU' if args.cpu else 'wall'}) and "
          f"{RSS_BUDGET_MB:g} MB per run, median of {args.runs} after one untimed warm-up; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    header = f"{'case':<34}{'input':>9}{'wall':>9}{'CPU':>9}{'max RSS':>10}{'exit':>6}  result"
    print(header)
    print("-" * len(header))
    failed = False
    writer = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    try:
        for key in args.only or list(CASES):
            title = CASES[key][0]
            root = out_dir / key
            size = writer.submit(write_case, key, str(root)).result()
            cmd = [*prefix, "validate"]
            run_once(cmd, root, env, args.timeout)  # warm-up: page cache, .pyc files
            samples = [run_once(cmd, root, env, args.timeout) for _ in range(args.runs)]
            wall = statistics.median(s[0] for s in samples)
            cpu = statistics.median(s[1] for s in samples)
            rss = max(s[2] for s in samples)
            code = samples[-1][3]
            ok = (cpu if args.cpu else wall) <= TIME_BUDGET_S and rss <= RSS_BUDGET_MB and code in (0, 5)
            failed |= not ok
            shown = f"{size / MB:.1f} MB" if size >= MB else f"{size / 1024:.0f} KB"
            print(f"{title:<34}{shown:>9}{wall:>8.3f}s{cpu:>8.3f}s{rss:>7.1f} MB{code:>6}  "
                  f"{'PASS' if ok else 'FAIL'}" + ("" if code in (0, 5) else f": {samples[-1][4]}"), flush=True)
    finally:
        writer.shutdown()
        if not args.keep:
            shutil.rmtree(out_dir, ignore_errors=True)
    print(f"\nrerun one: python {shlex.quote(str(Path(__file__)))} --only CASE --keep DIR; "
          f"then cd DIR/CASE && /usr/bin/time -f '%e s %M KB' {shlex.join(prefix)} validate")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
