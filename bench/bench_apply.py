#!/usr/bin/env python3
"""plan / apply benchmark of the madengine CLI: a no-op plan over 1,000 jobs, and 20 busybox jobs on Docker.

    python bench/bench_apply.py [--runs N] [--only NAME] [--tty] [--profile DIR] [--json FILE]

Benchmarks (NAME for --only, repeatable):

  plan-local    no-op `madengine plan` over 1,000 jobs (250 models x repeat 4, `local` target), every
                result present. Budget: median <= 0.5 s. Each sample is also checked with
                `plan --detailed-exitcode` (must exit 0).
  plan-docker   the same project on a `docker` target, its 10 images present: observation asks the
                engine about each. Same budget (the issue states it for plan; reported separately).
  apply-docker  20 jobs (`sleep 0.5; echo performance: 1 x`) in one prebuilt busybox image: a fresh
                `madengine apply --yes --parallelism 1|2 --replace <each job>` against a shell loop of
                20 `docker run --rm --network none <tag> sh -c '...'`. Budgets: -j1 <= 1.3 x the loop;
                -j2 < the loop. Prints the per-job overhead (apply -j1 - loop) / 20 and, from
                `docker events`, where each side spends its time.

The projects are generated (deterministically, files rewritten only when they differ) under
bench/out/apply/ and their state is populated once by a real apply; later runs reuse it. Every
timed command is the real CLI in a child process; wall time from spawn to reap; one untimed
warm-up first; medians of N. Standard library only.

Exit status: 0 when every available benchmark is within budget, 1 when one is not (or errors),
2 with --strict when one is not available (no Docker engine).
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import importlib.util
import itertools
import json
import os
import platform
import pty
import re
import shlex
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_OUT = HERE / "out" / "apply"
MARKER = ".madengine-bench-apply"
SERVICES_ENV = Path(os.environ.get("MADENGINE_SERVICES_DIR", "/tmp/madengine-services")) / "env"
DEFAULT_BASE = "localhost:5000/madengine/busybox:1"

PLAN_BUDGET_S = 0.5
APPLY_RATIO_BUDGET = 1.3
N_PLAN_MODELS, PLAN_REPEAT, N_IMAGES = 250, 4, 10
N_DOCKER_JOBS = 20
JOB_SHELL = "sleep 0.5; echo performance: 1 x"
PLAN_LINE = re.compile(r"Plan: (\d+) to build, (\d+) to run, (\d+) unchanged")
USAGE_EXIT_CODES = (2, 4)  # click's usage error, madengine's USAGE: the command/option does not exist yet


# --- running children ------------------------------------------------------------------------------


@dataclasses.dataclass
class Sample:
    seconds: float
    cpu_seconds: float  # user + sys of the child and its reaped descendants: steadier on a busy machine
    max_rss_kb: int
    returncode: int
    out: str
    start_ns: int  # time.time_ns() at spawn and at reap: to place docker events
    end_ns: int


def run_child(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float, tty: bool = False) -> Sample:
    """One child process: wall time from spawn to reap, its max RSS (wait4), stdout+stderr merged.

    With `tty`, the child's stdout/stderr are a pseudo-terminal (120x40), as for a user at a terminal:
    rich then draws its live progress. Otherwise they go to a file, as in CI.
    """
    chunks: list[bytes] = []
    master = reader = None
    with tempfile.TemporaryFile() as sink:
        if tty:
            master, slave = pty.openpty()
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
            out_fd: Any = slave
        else:
            out_fd = sink
        start_ns = time.time_ns()
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out_fd,
                                stderr=subprocess.STDOUT)
        if tty:
            os.close(slave)
            assert master is not None
            fd = master

            def drain() -> None:
                while True:
                    try:
                        data = os.read(fd, 65536)
                    except OSError:  # EIO: the child closed the terminal
                        return
                    if not data:
                        return
                    chunks.append(data)

            reader = threading.Thread(target=drain, daemon=True)
            reader.start()
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        seconds = time.perf_counter() - start
        end_ns = time.time_ns()
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so tell Popen
        if reader is not None and master is not None:
            reader.join(5)
            os.close(master)
            text = b"".join(chunks).decode(errors="replace")
        else:
            sink.seek(0)
            text = sink.read().decode(errors="replace")
    rss = usage.ru_maxrss // 1024 if sys.platform == "darwin" else usage.ru_maxrss
    return Sample(seconds, usage.ru_utime + usage.ru_stime, rss, proc.returncode, text, start_ns, end_ns)


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""


def resolve_madengine(override: str | None) -> tuple[list[str], str, str]:
    """(command prefix, how it was found, the python that runs it: for --profile)."""
    if override:
        return shlex.split(override), "--madengine", sys.executable
    beside = Path(sys.executable).parent / "madengine"  # not PATH: a pyenv shim adds ~60 ms of bash
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)], "console script of this interpreter", sys.executable
    exe = shutil.which("madengine")
    if exe:
        first = Path(exe).read_bytes()[:200].split(b"\n", 1)[0]
        python = first[2:].decode().strip() if first.startswith(b"#!") else sys.executable
        return [exe], "console script on PATH", python
    if importlib.util.find_spec("madengine") is None:
        raise SystemExit("bench_apply: madengine is not installed (pip install -e .)")
    return [sys.executable, "-m", "madengine"], "python -m madengine", sys.executable


def child_env(keep_env: bool) -> tuple[dict[str, str], list[str]]:
    """The environment of every child, and notes on what was changed (shown in the header)."""
    env = dict(os.environ)
    notes = []
    for key, value in read_services_env().items():
        if key not in env:
            env[key] = value
            notes.append(f"{key}={value} from {SERVICES_ENV}")
    env.setdefault("NO_COLOR", "1")
    env.setdefault("COLUMNS", "120")
    if not keep_env and env.get("PYTHONDONTWRITEBYTECODE"):
        # Without .pyc files every start compiles madengine's sources again: not what a user's
        # installation does. Cache them under bench/out instead of beside the sources.
        del env["PYTHONDONTWRITEBYTECODE"]
        env.setdefault("PYTHONPYCACHEPREFIX", str(HERE / "out" / "pycache"))
        notes.append(f"PYTHONDONTWRITEBYTECODE unset, PYTHONPYCACHEPREFIX={env['PYTHONPYCACHEPREFIX']} "
                     "(--keep-env to keep it)")
    return env, notes


def read_services_env() -> dict[str, str]:
    values = {}
    if SERVICES_ENV.is_file():
        for line in SERVICES_ENV.read_text().splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and key and not key.startswith("#"):
                values[key] = value
    return values


def env_prefix(env: dict[str, str]) -> str:
    """What a rerun command needs in front to see the environment the benchmark used."""
    parts = []
    if "PYTHONDONTWRITEBYTECODE" in os.environ and "PYTHONDONTWRITEBYTECODE" not in env:
        parts.append("env -u PYTHONDONTWRITEBYTECODE")
    for key in ("PYTHONPYCACHEPREFIX", "DOCKER_HOST"):
        if key in env and env.get(key) != os.environ.get(key):
            parts.append(f"{key}={shlex.quote(env[key])}")
    return " ".join(parts) + " " if parts else ""


# --- the projects ------------------------------------------------------------------------------------


def write_if_changed(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
        if path.suffix == ".sh":
            path.chmod(0o755)


def claim(root: Path) -> None:
    """Only ever write into a directory this benchmark made (or an empty one)."""
    if root.exists() and any(root.iterdir()) and not (root / MARKER).exists():
        raise SystemExit(f"bench_apply: {root} is not empty and was not made by this benchmark; "
                         "choose another --out")
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).touch()


def make_project(root: Path, *, n_models: int, n_images: int, backend: str, repeat: int, script: str,
                 base: str) -> None:
    """A MAD package (models.json, docker/, scripts/) with a madfile selecting all of it."""
    claim(root)
    models = [{"name": f"m{i:03d}", "url": "", "dockerfile": f"docker/img{i % n_images:02d}",
               "scripts": "scripts/bench/run.sh", "n_gpus": "0", "owner": "bench@example.com",
               "training_precision": "", "tags": ["bench"], "args": ""} for i in range(n_models)]
    write_if_changed(root / "models.json", json.dumps(models, indent=1) + "\n")
    for i in range(n_images):
        write_if_changed(root / "docker" / f"img{i:02d}.ubuntu.none.Dockerfile",
                         "# CONTEXT {'gpu_vendor': 'NONE', 'guest_os': 'UBUNTU'}\n"
                         f"ARG BASE_DOCKER={base}\nFROM $BASE_DOCKER\nLABEL bench.image={i}\n")
    write_if_changed(root / "scripts" / "bench" / "run.sh", f"#!/bin/bash\n{script}\n")
    target = "here: {backend: local}" if backend == "local" else "box: {backend: docker}"
    runs = f"runs: [{{models: [bench], repeat: {repeat}}}]\n" if repeat > 1 else ""
    write_if_changed(root / "madfile.yaml",
                     f"version: 1\nname: {root.name}\npackage: .\nmodels: [{{select: all}}]\n"
                     f"contexts: {{cpu: {{gpu_vendor: NONE, guest_os: UBUNTU}}}}\ntargets: {{{target}}}\n{runs}")


def job_addresses(root: Path) -> list[str]:
    return sorted(json.loads((root / "madengine.lock").read_text())["jobs"])


def image_tags(root: Path) -> list[str]:
    return sorted(e["tag"] for e in json.loads((root / "madengine.lock").read_text())["images"].values())


# --- benchmarks ----------------------------------------------------------------------------------------


@dataclasses.dataclass
class Row:
    key: str
    title: str
    samples: list[Sample] = dataclasses.field(default_factory=list)
    budget: str = ""
    status: str = ""  # PASS | FAIL | error | not available | info
    detail: str = ""
    rerun: str = ""

    def times(self) -> list[float]:
        return [s.seconds for s in self.samples]

    def median(self) -> float:
        return statistics.median(self.times())


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.prefix, self.how, self.python = resolve_madengine(args.madengine)
        self.env, self.env_notes = child_env(args.keep_env)
        self.out: Path = args.out.resolve()
        self.base = self.env.get("MADENGINE_BASE_IMAGE", DEFAULT_BASE)
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.events: list[dict[str, Any]] = []
        self.timer = "/usr/bin/time -f '%e s %M KB' " if Path("/usr/bin/time").exists() else ""

    def me(self, *args: str) -> list[str]:
        return [*self.prefix, *args]

    def rerun(self, root: Path, cmd: list[str] | str, timed: bool = True) -> str:
        text = cmd if isinstance(cmd, str) else shlex.join(cmd)
        return f"cd {shlex.quote(str(root))} && {env_prefix(self.env)}{self.timer if timed else ''}{text}"

    def check(self, cmd: list[str], cwd: Path, what: str, timeout: float = 600, ok: tuple[int, ...] = (0,)) -> Sample:
        s = run_child(cmd, cwd, self.env, timeout)
        if s.returncode not in ok:
            raise BenchError(f"{what}: `{shlex.join(cmd)}` exit {s.returncode}: {last_line(s.out)}")
        return s

    # --- docker --------------------------------------------------------------------------------------

    def docker_problem(self) -> str | None:
        if not shutil.which("docker"):
            return "no docker CLI"
        s = run_child(["docker", "info", "--format", "{{.ServerVersion}}"], REPO, self.env, 30)
        if s.returncode != 0:
            return f"no Docker engine ({last_line(s.out)}); start it: bash dev/services start"
        s = run_child(["docker", "image", "inspect", "--format", "{{.Id}}", self.base], REPO, self.env, 30)
        if s.returncode != 0:
            return f"base image {self.base} missing; bash dev/services start builds it"
        return None

    # --- 1. no-op plan ---------------------------------------------------------------------------------

    def plan_noop(self, key: str, backend: str) -> None:
        root = self.out / key
        n_jobs = N_PLAN_MODELS * PLAN_REPEAT
        row = Row(key, f"plan, {n_jobs} jobs ({backend})", budget=f"<={PLAN_BUDGET_S}s",
                  rerun=self.rerun(root, self.me("plan")))
        self.rows.append(row)
        if backend == "docker" and (problem := self.docker_problem()):
            row.status, row.detail = "not available", problem
            return
        make_project(root, n_models=N_PLAN_MODELS, n_images=N_IMAGES, backend=backend, repeat=PLAN_REPEAT,
                     script='echo "performance: 1 x"', base=self.base)
        populate = self.me("apply", "--yes", "--parallelism", "2" if backend == "local" else "4")
        probe = run_child(self.me("plan", "--detailed-exitcode"), root, self.env, 600)
        if probe.returncode == 2:  # something to do: populate the state once (later runs reuse it)
            print(f"  {key}: populating the state once: {shlex.join(populate[len(self.prefix):])} ...",
                  flush=True)
            s = self.check(populate, root, f"{key}: populating apply", timeout=7200)
            self.notes.append(f"{key}: state populated by `madengine {shlex.join(populate[len(self.prefix):])}` "
                              f"in {s.seconds:.1f}s (one-off; kept in {root / '.madengine'})")
        elif probe.returncode != 0:
            row.status, row.detail = classify(probe)
            return
        checks = []
        summary = ""
        for i in range(self.args.plan_runs + 1):  # the first is the untimed warm-up
            s = run_child(self.me("plan"), root, self.env, 600)
            detailed = run_child(self.me("plan", "--detailed-exitcode"), root, self.env, 600)
            m = PLAN_LINE.search(s.out)
            if s.returncode != 0:
                row.status, row.detail = classify(s)
                return
            if not m or m.group(1, 2) != ("0", "0") or int(m.group(3)) < n_jobs:
                row.status, row.detail = "error", f"not a no-op plan: {m.group(0) if m else last_line(s.out)}"
                return
            if detailed.returncode != 0:
                row.status, row.detail = "error", f"plan --detailed-exitcode exit {detailed.returncode}, not 0"
                return
            checks.append(detailed.seconds)
            summary = m.group(0)
            if i:
                row.samples.append(s)
        row.status = "PASS" if row.median() <= PLAN_BUDGET_S else "FAIL"
        row.detail = (f"{summary}; --detailed-exitcode exit 0 every time "
                      f"(median {statistics.median(checks[1:]):.3f}s)")

    # --- 2. 20 jobs on docker vs docker run --------------------------------------------------------------

    def apply_docker(self) -> None:
        key = "apply-docker"
        root = self.out / "docker20"
        loop_row = Row("loop", f"shell loop, {N_DOCKER_JOBS}x docker run", status="info", budget="(reference)")
        j1 = Row("apply-j1", "apply --parallelism 1", budget=f"<={APPLY_RATIO_BUDGET}x loop")
        j2 = Row("apply-j2", "apply --parallelism 2", budget="< loop")
        p2 = Row("loop-p2", "loop, 2 at a time (xargs)", status="info", budget="(reference)")
        fixed = Row("plan-docker20", "plan (apply's fixed part)", status="info", budget="(reference)")
        rows = [loop_row, j1, j2, p2, fixed]
        self.rows.extend(rows)
        if problem := self.docker_problem():
            for r in rows:
                r.status, r.detail = "not available", problem
            return
        make_project(root, n_models=N_DOCKER_JOBS, n_images=1, backend="docker", repeat=1,
                     script=JOB_SHELL.replace("; ", "\n"), base=self.base)
        # The image is built and recorded, and every job has run once: the timed applies build nothing.
        probe = run_child(self.me("plan", "--detailed-exitcode"), root, self.env, 600)
        if probe.returncode == 2:
            self.check(self.me("apply", "--yes"), root, f"{key}: first apply (build + run)")
        elif probe.returncode != 0:
            for r in rows:
                r.status, r.detail = classify(probe)
            return
        tag = image_tags(root)[0]
        jobs = job_addresses(root)
        replace = [a for job in jobs for a in ("--replace", job)]
        log = self.out / "docker20-loop.log"
        one = shlex.join(["docker", "run", "--rm", "--network", "none", tag, "sh", "-c", JOB_SHELL])
        loop_sh = f"for i in $(seq {N_DOCKER_JOBS}); do {one}; done >> {shlex.quote(str(log))}"
        p2_sh = f"seq {N_DOCKER_JOBS} | xargs -P 2 -I{{}} {one} >> {shlex.quote(str(log))}"
        apply1 = self.me("apply", "--yes", "--parallelism", "1", *replace)
        apply2 = self.me("apply", "--yes", "--parallelism", "2", *replace)
        loop_row.rerun = self.rerun(root, f"bash -c {shlex.quote(loop_sh)}")
        p2.rerun = self.rerun(root, f"bash -c {shlex.quote(p2_sh)}")
        j1.rerun, j2.rerun = self.rerun(root, apply1), self.rerun(root, apply2)
        fixed.rerun = self.rerun(root, self.me("plan"))

        def shell(script: str) -> Callable[[], Sample]:
            def go() -> Sample:
                log.write_text("")
                s = run_child(["bash", "-c", script], root, self.env, 600)
                n = log.read_text().count("performance: 1 x")
                if s.returncode != 0 or n != N_DOCKER_JOBS:
                    raise BenchError(f"shell loop: exit {s.returncode}, {n} results: {last_line(s.out)}")
                return s
            return go

        def apply(cmd: list[str]) -> Callable[[], Sample]:
            def go() -> Sample:
                s = run_child(cmd, root, self.env, 900, tty=self.args.tty)
                m = PLAN_LINE.search(s.out)
                if s.returncode != 0 or not m or m.group(1, 2) != ("0", str(N_DOCKER_JOBS)) \
                        or f"{N_DOCKER_JOBS} SUCCESS" not in s.out:
                    raise BenchError(f"apply: exit {s.returncode}, {m.group(0) if m else 'no plan line'}: "
                                     f"{last_line(s.out)}")
                return s
            return go

        def plan() -> Sample:
            return self.check(self.me("plan"), root, "plan")

        steps = [(loop_row, shell(loop_sh)), (j1, apply(apply1)), (j2, apply(apply2)), (p2, shell(p2_sh)),
                 (fixed, plan)]
        events = EventLog(self.env, tag)
        try:
            for _row, step in steps:  # untimed warm-ups: page cache, the docker CLI, .pyc files
                step()
            # Interleaved rounds, the order rotated each round, so that a slow spell of a shared
            # machine falls on every side alike.
            for rnd in range(self.args.docker_runs):
                k = rnd % len(steps)
                for row, step in steps[k:] + steps[:k]:
                    row.samples.append(step())
                print(f"  {key}: round {rnd + 1}/{self.args.docker_runs} done", flush=True)
        except BenchError as e:
            for r in rows:
                r.status, r.detail = "error", str(e)
            return
        finally:
            self.events = events.stop()
        loop = loop_row.median()
        j1.status = "PASS" if j1.median() <= APPLY_RATIO_BUDGET * loop else "FAIL"
        j2.status = "PASS" if j2.median() < loop else "FAIL"
        j1.detail = (f"{j1.median() / loop:.2f}x loop; per-job overhead (apply - loop)/{N_DOCKER_JOBS} = "
                     f"{(j1.median() - loop) / N_DOCKER_JOBS * 1000:+.0f} ms")
        j2.detail = f"{j2.median() / loop:.2f}x loop, {j2.median() / p2.median():.2f}x the 2-wide loop"
        fixed.detail = "imports + lock + observe: what apply does before its first job"
        self.container_breakdown(rows[:4])

    def container_breakdown(self, rows: list[Row]) -> None:
        """Where each side's time goes, from the engine's own container events (create = created)."""
        by_id: dict[str, dict[str, int]] = {}
        for e in self.events:
            by_id.setdefault(e["id"], {}).setdefault(e["Action"].split(":")[0], int(e["timeNano"]))
        containers = [c for c in by_id.values() if {"create", "start", "die", "destroy"} <= set(c)]
        lines = []
        for row in rows:
            lead, tail, gap, create_start, run, remove = [], [], [], [], [], []
            for s in row.samples:
                mine = sorted((c for c in containers if s.start_ns <= c["create"] <= s.end_ns),
                              key=lambda c: c["create"])
                if len(mine) != N_DOCKER_JOBS:
                    continue
                lead.append(mine[0]["create"] - s.start_ns)
                tail.append(s.end_ns - max(c["destroy"] for c in mine))
                gap += [b["create"] - a["destroy"] for a, b in itertools.pairwise(mine)]
                create_start += [c["start"] - c["create"] for c in mine]
                run += [c["die"] - c["start"] for c in mine]
                remove += [c["destroy"] - c["die"] for c in mine]
            if not lead:
                continue
            serial = row.key in ("loop", "apply-j1")
            lines.append(f"  {row.title:<30}{ms(lead):>8}{ms(gap) if serial else '-':>8}{ms(create_start):>17}"
                         f"{ms(run):>13}{ms(remove):>15}{ms(tail):>8}")
        if lines:
            self.notes.append("docker events, medians in ms: lead = spawn -> 1st container created; gap = one "
                              "container removed -> the next created (serial sides only); tail = last "
                              "removed -> exit\n"
                              f"  {'':<30}{'lead':>8}{'gap':>8}{'created->start':>17}{'start->die':>13}"
                              f"{'die->removed':>15}{'tail':>8}\n" + "\n".join(lines))

    # --- --profile -------------------------------------------------------------------------------------

    def profile(self, directory: Path) -> None:
        """One extra untimed run per command: `-X importtime` (imports) and cProfile (main thread)."""
        import pstats

        directory = directory.resolve()
        directory.mkdir(parents=True, exist_ok=True)
        cases = [("plan-local", self.out / "plan-local", ["plan"]),
                 ("plan-docker", self.out / "plan-docker", ["plan"])]
        docker20 = self.out / "docker20"
        if (docker20 / "madengine.lock").exists():
            replace = [a for job in job_addresses(docker20) for a in ("--replace", job)]
            cases.append(("apply-j1", docker20, ["apply", "--yes", "--parallelism", "1", *replace]))
        only = set(self.args.only or BENCHMARKS)
        for name, root, args in cases:
            if not (root / "madengine.lock").exists() or {"apply-j1": "apply-docker"}.get(name, name) not in only:
                continue
            cmd = [self.python, "-X", "importtime", "-m", "madengine", *args]
            s = run_child(cmd, root, self.env, 900)
            imports, packages = import_summary(s.out)
            prof = directory / f"{name}.prof"
            cmd = [self.python, "-m", "cProfile", "-o", str(prof), "-m", "madengine", *args]
            p = run_child(cmd, root, self.env, 900)
            print(f"\nprofile {name}: {p.seconds:.3f}s under cProfile ({prof}); "
                  f"imports {imports:.3f}s of {s.seconds:.3f}s under -X importtime")
            print("  imports by top-level package (self time): " +
                  ", ".join(f"{k} {v * 1000:.0f}ms" for k, v in packages[:8]))
            stats = pstats.Stats(str(prof))
            rows = [(func, ct) for func, (_, _, _, ct, _) in stats.stats.items()  # type: ignore[attr-defined]
                    if "/madengine/" in func[0] and "<module>" not in func[2]]
            for (file, line, fn), ct in sorted(rows, key=lambda r: -r[1])[:14]:
                print(f"  {ct:8.3f}s  {file.split('/madengine/', 1)[1]}:{line}({fn})")
            print(f"  rerun: cd {shlex.quote(str(root))} && {env_prefix(self.env)}{shlex.join(cmd)}")

    # --- report --------------------------------------------------------------------------------------------

    def report(self) -> None:
        header = (f"{'benchmark':<32}{'median':>9}{'min':>9}{'max':>9}{'CPU':>8}{'max RSS':>10}  "
                  f"{'budget':<14}result")
        print("\n" + header)
        print("-" * (len(header) + 10))
        for r in self.rows:
            if r.samples:
                t = r.times()
                rss = max(s.max_rss_kb for s in r.samples) / 1024
                cpu = statistics.median(s.cpu_seconds for s in r.samples)
                print(f"{r.title:<32}{fmt(r.median()):>9}{fmt(min(t)):>9}{fmt(max(t)):>9}{fmt(cpu):>8}{rss:>7.1f} MB  "
                      f"{r.budget:<14}{r.status}" + (f"  {r.detail}" if r.detail else ""))
            else:
                print(f"{r.title:<32}{'-':>9}{'-':>9}{'-':>9}{'-':>8}{'-':>10}  {r.budget:<14}{r.status}: {r.detail}")
        for note in self.notes:
            print("\n" + note)
        print("\nmedian/min/max: wall time, spawn to reap; CPU: median user+sys of the child and of the "
              "processes it reaped (the loop's docker CLIs), never dockerd's")
        print("\nrerun (the benchmark generates and populates these directories first):")
        for r in self.rows:
            if r.rerun:
                print(f"  {r.title}:\n    {r.rerun}")


class BenchError(Exception):
    pass


class EventLog:
    """`docker events` for the containers of one image, from now until stop()."""

    def __init__(self, env: dict[str, str], image: str) -> None:
        self.image = image
        self.file = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop)
        self.proc = subprocess.Popen(
            ["docker", "events", "--since", f"{time.time():.6f}", "--filter", "type=container",
             "--format", "{{json .}}"], env=env, stdout=self.file, stderr=subprocess.DEVNULL)

    def stop(self) -> list[dict[str, Any]]:
        time.sleep(0.5)  # the last events are written after the last CLI call returned
        self.proc.terminate()
        self.proc.wait(10)
        self.file.seek(0)
        events = []
        for line in self.file.read().decode(errors="replace").splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if (e.get("Actor") or {}).get("Attributes", {}).get("image") == self.image:
                events.append(e)
        self.file.close()
        return events


def classify(s: Sample) -> tuple[str, str]:
    if s.returncode in USAGE_EXIT_CODES or "No such command" in s.out:
        return "not available", f"exit {s.returncode} (usage error): {last_line(s.out)}"
    return "error", f"exit {s.returncode}: {last_line(s.out)}"


def import_summary(stderr: str) -> tuple[float, list[tuple[str, float]]]:
    """From `-X importtime`: the total import time (top-level cumulative), self time per package."""
    total = 0.0
    per: dict[str, float] = {}
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( +)(\S+)", line)
        if not m:
            continue
        if len(m.group(3)) == 1:
            total += int(m.group(2)) / 1e6
        top = m.group(4).split(".")[0]
        per[top] = per.get(top, 0.0) + int(m.group(1)) / 1e6
    return total, sorted(per.items(), key=lambda kv: -kv[1])


def ms(values_ns: list[int]) -> str:
    return f"{statistics.median(values_ns) / 1e6:.0f}" if values_ns else "-"


def fmt(x: float) -> str:
    return f"{x:.3f}s"


BENCHMARKS = ("plan-local", "plan-docker", "apply-docker")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark madengine plan / apply (see the module docstring).")
    parser.add_argument("--runs", type=int, help="timed runs per benchmark (default: 5 per plan, 3 rounds of "
                        "the docker comparison, ~1 min each)")
    parser.add_argument("--only", action="append", choices=BENCHMARKS, metavar="NAME",
                        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}")
    parser.add_argument("--madengine", metavar="CMD", help="command to run madengine (default: the console "
                        "script beside this interpreter)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"projects go here (default {DEFAULT_OUT})")
    parser.add_argument("--tty", action="store_true", help="run the applies on a pseudo-terminal, as a user "
                        "sees them (rich draws its live progress); default: output to a file, as in CI")
    parser.add_argument("--keep-env", action="store_true", help="keep PYTHONDONTWRITEBYTECODE if set "
                        "(default: unset it for the children, caching .pyc files under bench/out)")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="afterwards, profile one plan per project "
                        "and one apply -j1 (-X importtime and cProfile), writing DIR/*.prof")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--strict", action="store_true", help="exit 2 when a benchmark is not available")
    args = parser.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    args.plan_runs = args.runs or 5
    args.docker_runs = args.runs or 3
    only = set(args.only or BENCHMARKS)

    bench = Bench(args)
    print(f"madengine: {shlex.join(bench.prefix)}  [{bench.how}]")
    print(f"python {platform.python_version()} on {platform.platform()}, {os.cpu_count()} CPUs, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for note in bench.env_notes:
        print(f"env: {note}")
    print(f"projects: {bench.out}; base image {bench.base}")
    print(f"runs: {args.plan_runs} timed per plan benchmark, {args.docker_runs} interleaved rounds of the docker "
          "comparison; one untimed warm-up each\n")

    try:
        if "plan-local" in only:
            bench.plan_noop("plan-local", "local")
        if "plan-docker" in only:
            bench.plan_noop("plan-docker", "docker")
        if "apply-docker" in only:
            bench.apply_docker()
    except BenchError as e:
        bench.rows.append(Row("setup", "setup", status="error", detail=str(e)))
    bench.report()
    if args.profile:
        bench.profile(args.profile)
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          "(a busy machine inflates every figure; compare runs on the same machine)")

    if args.json:
        report = {
            "madengine": bench.prefix, "python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "env_notes": bench.env_notes, "notes": bench.notes,
            "benchmarks": [{"key": r.key, "title": r.title, "budget": r.budget, "status": r.status,
                            "detail": r.detail, "times_s": r.times(), "rerun": r.rerun,
                            "cpu_s": [s.cpu_seconds for s in r.samples],
                            "median_s": r.median() if r.samples else None} for r in bench.rows],
        }
        args.json.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if any(r.status in ("FAIL", "error") for r in bench.rows):
        return 1
    if args.strict and any(r.status == "not available" for r in bench.rows):
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
