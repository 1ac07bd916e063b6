"""What the slurm backend submits, as pure functions: sbatch scripts for one job, a job array, a multi-node job.

Kept apart from `slurm.py` (which writes them into the shared directory and runs `sbatch`) so they are
golden-tested without a cluster, and so `madengine generate slurm` writes exactly what the backend submits.

Layout in the target's shared directory (`<shared_dir>/<workspace id>-<target>`, every node sees it):

    jobs/<name>.sbatch      a submission's script (read again by `srun` on every node of a multi-node job)
    logs/<id>.out           a job's output (its log), by its SLURM id (`<array id>_<task>.out` in an array)
    logs/<id>.exit          its exit status, written by its script as it ends (read when SLURM forgot the job)
    runs/<job>/             a job's run directory (rundir.fill_run_dir), `runs/<entry>` -> ../package/<entry>
    package/                the MAD package's top-level entries
    images/<image>.sif      apptainer images, pulled once per image

The template (top-level `templates/slurm/job.sbatch.j2`) holds no value from a madfile or a package as
text: every word of the script is rendered here by `shlex.quote` (names of environment variables are
checked, bare), `#SBATCH` values were checked by the madfile's model to be one word, and the only shell
programs are the template's constant parts and `docker_render.DRIVER`, which takes the steps as
positional parameters, never parsed by a shell. Secrets of a job's environment are never written into a
script: task `i`'s `NAME` is read from `MADENGINE_SECRET_<i>_NAME` in sbatch's environment.
"""

from __future__ import annotations

import hashlib
import json
import math
import posixpath
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

import jinja2

from madengine import shipped
from madengine.backends import docker_render, multinode
from madengine.backends.base import ATTEMPT_ENV, node_file_name
from madengine.backends.specs import JobSpec, hidden

MAX_ARRAY = 1000  # tasks in one array: SLURM's default MaxArraySize is 1001 (indices 0-1000)
SECRET_ENV_PREFIX = "MADENGINE_SECRET_"  # + `<task>_<NAME>`: a secret's value, in sbatch's environment
# The variables a multi-node job sets on each node (MAD's launchers read them); into a container by name.
MULTI_NODE_ENV = tuple(multinode.node_env(2, 1, "0", "x"))
_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Docker options an apptainer container cannot be given (it runs as the user, with the host's limits).
_NOT_FOR_APPTAINER = {"user": "--user", "ulimits": "--ulimit", "privileged": "--privileged",
                      "cap_add": "--cap-add", "cap_drop": "--cap-drop"}


@dataclass(frozen=True)
class Cluster:
    """A slurm target's settings, as the scripts use them (the madfile's model checked each value)."""

    target: str
    workspace_id: str
    base: str  # <shared_dir>/<workspace id>-<target>, absolute on the cluster
    container: str = "docker"  # docker | apptainer | none
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_limit: str | None = None
    exclusive: bool = False
    constraint: str | None = None
    modules: tuple[str, ...] = ()
    extra_sbatch: tuple[str, ...] = ()
    gpus_per_node: int | None = None
    array: bool = True

    @property
    def jobs(self) -> str:
        return posixpath.join(self.base, "jobs")

    @property
    def logs(self) -> str:
        return posixpath.join(self.base, "logs")

    @property
    def runs(self) -> str:
        return posixpath.join(self.base, "runs")

    @property
    def package(self) -> str:
        return posixpath.join(self.base, "package")

    @property
    def images(self) -> str:
        return posixpath.join(self.base, "images")


@dataclass(frozen=True)
class Task:
    """One job of a submission: the job, its run directory on the cluster, and the reference its nodes pull
    its image by (container docker or apptainer)."""

    job: JobSpec
    run_dir: str
    image_ref: str | None = None
    package_entries: tuple[str, ...] = ()  # the names of the MAD package's top-level entries


@dataclass(frozen=True)
class Script:
    """One submission: its script, where it goes, and where each task's output (the job's log) is written."""

    name: str
    text: str
    tasks: tuple[Task, ...]
    array: bool
    # sbatch's environment: each task's secrets (SECRET_ENV_PREFIX<task>_<NAME>); never in the text
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def path(self, cluster: Cluster) -> str:
        return posixpath.join(cluster.jobs, f"{self.name}.sbatch")


    def handle(self, job_id: str, index: int) -> str:
        """A task's SLURM id: `4242`, or `4242_3` in an array."""
        return f"{job_id}_{index}" if self.array else job_id


# --- values ---------------------------------------------------------------------------------------


def output(cluster: Cluster, handle: str) -> str:
    """Where a job's output (its log) is: named by its SLURM id, so a later apply finds it from the handle alone."""
    return posixpath.join(cluster.logs, f"{handle}.out")


def env_name(name: str) -> str:
    if not _ENV_NAME.match(name):
        raise ValueError(f"{name!r} is not an environment variable's name")
    return name


def double_quoted(value: str) -> str:
    """A value in double quotes for the node's shell: its `${NAME}` references expanded there, nothing else."""
    out, at = [], 0
    for m in _REFERENCE.finditer(value):
        out.append(re.sub(r'([\\"`$])', r"\\\1", value[at:m.start()]) + m.group())
        at = m.end()
    out.append(re.sub(r'([\\"`$])', r"\\\1", value[at:]))
    return '"' + "".join(out) + '"'


def node_exports(job: JobSpec, cluster: Cluster) -> list[tuple[str, str]]:
    """What each node of a multi-node job exports, in order (multinode.node_env): its rank is SLURM's node id,
    the master is the first node of the job's allocation and its port one chosen by the job id
    (MADENGINE_MASTER_ADDR and _PORT, found once by the batch step)."""
    env = multinode.node_env(max(1, job.nnodes), max(1, gpus(job, cluster)), "${SLURM_NODEID}",
                             "${MADENGINE_MASTER_ADDR}", "${MADENGINE_MASTER_PORT}")
    return [(env_name(k), double_quoted(v)) for k, v in env.items()]


def comment_text(text: str) -> str:
    """A value shown in a `#` comment of the script: on one line, whatever it holds (JSON's escapes)."""
    return json.dumps(text, ensure_ascii=True)[1:-1]


def time_option(job: JobSpec, cluster: Cluster) -> str | None:
    """`--time`: the job's timeout in whole minutes (SLURM's granularity, rounded up), else the target's
    time_limit, else none (the partition's default)."""
    if job.timeout > 0:
        return str(max(1, math.ceil(job.timeout / 60)))
    return cluster.time_limit


def gpus(job: JobSpec, cluster: Cluster) -> int:
    """GPUs per node a job asks for: its n_gpus, or all of a node's (-1)."""
    if job.n_gpus < 0:
        return cluster.gpus_per_node or 0
    return job.n_gpus


def _ranges(numbers: Sequence[str]) -> str:
    """`12-15,20` for attempt ids (kept short: a comment of a 1000-task array)."""
    if not all(n.isdigit() for n in numbers):
        return ",".join(re.sub(r"[^A-Za-z0-9_.-]", "_", n) for n in numbers)
    values = sorted({int(n) for n in numbers})
    out: list[str] = []
    start = prev = values[0] if values else 0
    for v in [*values[1:], None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if v is not None:
            start = prev = v
    return ",".join(out)


def submission_name(cluster: Cluster, tasks: Sequence[Task]) -> str:
    """`madengine-<workspace>-<first attempt>`: how `squeue` shows it, and its files' names. Without an attempt
    (a generated script), the jobs' addresses name it."""
    attempt = tasks[0].job.env.get(ATTEMPT_ENV, "")
    if not attempt.isdigit():
        digest = hashlib.sha256("\0".join(t.job.address for t in tasks).encode()).hexdigest()[:10]
        attempt = f"x{digest}"
    workspace = re.sub(r"[^A-Za-z0-9_.-]", "_", cluster.workspace_id)[:24]
    return f"madengine-{workspace}-{attempt}" + (f"-{len(tasks)}" if len(tasks) > 1 else "")


def comment(cluster: Cluster, tasks: Sequence[Task]) -> str:
    """`--comment`: the workspace and the attempts, so a job is known for madengine's from `squeue` alone."""
    attempts = [t.job.env.get(ATTEMPT_ENV, "") for t in tasks]
    known = [a for a in attempts if a]
    return f"madengine:workspace={cluster.workspace_id}:target={cluster.target}" + (
        f":attempts={_ranges(known)}" if known else "")


# --- grouping -------------------------------------------------------------------------------------


def shape_options(job: JobSpec, cluster: Cluster) -> list[str]:
    """The `#SBATCH` options a job's shape decides (jobs sharing them, and an image, share an array)."""
    out = [f"--nodes={max(1, job.nnodes)}", "--ntasks-per-node=1"]
    for name, value in (("partition", cluster.partition), ("account", cluster.account), ("qos", cluster.qos),
                        ("time", time_option(job, cluster)), ("constraint", cluster.constraint)):
        if value:
            out.append(f"--{name}={value}")
    n = gpus(job, cluster)
    if cluster.gpus_per_node is not None and n > 0:
        out.append(f"--gpus-per-node={n}")
    if cluster.exclusive:
        out.append("--exclusive")
    return out + list(cluster.extra_sbatch)


def group(jobs: Sequence[JobSpec], cluster: Cluster) -> list[list[JobSpec]]:
    """Submissions, in the jobs' order: with `array`, jobs of one image and shape share one (at most
    MAX_ARRAY each); a multi-node job is always one of its own."""
    if not cluster.array:
        return [[j] for j in jobs]
    groups: dict[tuple[str, ...], list[list[JobSpec]]] = {}
    out: list[list[JobSpec]] = []
    for job in jobs:
        if job.nnodes > 1:
            out.append([job])
            continue
        key = (job.image_tag or "", *shape_options(job, cluster))
        chunks = groups.setdefault(key, [])
        if not chunks or len(chunks[-1]) >= MAX_ARRAY:
            chunks.append([])
            out.append(chunks[-1])
        chunks[-1].append(job)
    return out


# --- the script -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Env:
    """A task's environment as the script sets it."""

    exports: tuple[tuple[str, str], ...] = ()  # (NAME, quoted value)
    secrets: tuple[str, ...] = ()  # NAME: from SECRET_ENV_PREFIX<index>_NAME
    secret_values: Mapping[str, str] = field(default_factory=dict, repr=False)  # for sbatch's environment


@dataclass(frozen=True)
class _TaskBlock:
    """What the template writes for one task (every word already quoted)."""

    index: int
    address: str  # for a comment
    run_dir: str
    words: str  # `set -- ...`: the driver's steps, or the container command's arguments
    env: _Env
    container: str = ""  # docker: the container's name
    image: str = ""  # docker: the lock's tag; apptainer: the .sif path
    image_ref: str = ""  # what is pulled
    network: str = "given"  # docker: `auto` (none on an engine without a bridge network) or `given`
    extra: dict[str, str] = field(default_factory=dict)


def _split_env(env: Mapping[str, str], index: int, job: JobSpec) -> _Env:
    """The plain variables (quoted), the secret ones' names, and the secrets' values as sbatch's environment
    gives them to the script. Secret: named like one, or given by a `${env:NAME}` reference (specs.hidden)."""
    plain = tuple((env_name(k), shlex.quote(v)) for k, v in sorted(env.items()) if not hidden(k, job))
    secrets = tuple(env_name(k) for k in sorted(env) if hidden(k, job))
    return _Env(plain, secrets, {secret_variable(index, k): env[k] for k in secrets})


def secret_variable(index: int, name: str) -> str:
    """Where task `index`'s secret `name` is read from, in sbatch's environment."""
    return f"{SECRET_ENV_PREFIX}{index}_{env_name(name)}"


def host_env(job: JobSpec, cluster: Cluster, data_homes: list[str]) -> dict[str, str]:
    from madengine.backends.local import host_environment

    return host_environment(job, cluster.gpus_per_node, data_homes)


def _run_context(task: Task, cluster: Cluster) -> docker_render.RunContext:
    entries = tuple((n, posixpath.join(cluster.package, n)) for n in task.package_entries)
    return docker_render.RunContext(workspace_id=cluster.workspace_id, run_dir_host=task.run_dir,
                                    project_root=cluster.package, package_entries=entries,
                                    system_gpus=cluster.gpus_per_node)


def _multi_node_job(job: JobSpec) -> JobSpec:
    """The job with the multi-node variables passed into its container by name (their values are the
    node's, set by the script)."""
    if job.nnodes <= 1:
        return job
    return replace(job, env={**job.env, **dict.fromkeys(MULTI_NODE_ENV, "")})


def _task_block(index: int, task: Task, cluster: Cluster) -> _TaskBlock:
    job = task.job
    if cluster.container == "none":
        homes = [posixpath.join(cluster.package, m.host_path) if m.in_project else m.host_path
                 for m in job.data_mounts]
        return _TaskBlock(index, comment_text(job.address), shlex.quote(task.run_dir),
                          shlex.join(docker_render.run_steps(job)),
                          _split_env(host_env(job, cluster, homes), index, job))
    if task.image_ref is None:
        raise ValueError(f"{job.address}: a job in its image needs the registry reference its nodes pull")
    ctx = _run_context(task, cluster)
    multi = _multi_node_job(job)
    if cluster.container == "docker":
        from madengine.backends.docker_cli import container_name, run_argv

        name = container_name(cluster.workspace_id, job)
        kwargs = docker_render.run_arguments(multi, ctx)
        network = "given" if "network_mode" in kwargs else "auto"
        if job.nnodes > 1 and network == "auto":  # ranks reach each other at the nodes' addresses
            ctx = replace(ctx, network="host")
            network = "given"
        argv, env = run_argv(multi, ctx, name=name, remove=not job.keep_alive)
        env = {k: v for k, v in env.items() if not (job.nnodes > 1 and k in MULTI_NODE_ENV)}
        return _TaskBlock(index, comment_text(job.address), shlex.quote(task.run_dir), shlex.join(argv[2:]),
                          _split_env(env, index, job), container=shlex.quote(name),
                          image=shlex.quote(job.image_tag or ""), image_ref=shlex.quote(task.image_ref),
                          network=network)
    # apptainer: the docker backend's mounts and environment, in an image pulled once into shared_dir
    kwargs = docker_render.run_arguments(multi, ctx)
    refused = [flag for key, flag in _NOT_FOR_APPTAINER.items() if kwargs.get(key)]
    if refused:
        raise ValueError(f"{job.address}: apptainer cannot give a container {', '.join(refused)}")
    env = {k: v for k, v in kwargs["environment"].items() if not (job.nnodes > 1 and k in MULTI_NODE_ENV)}
    words = [w for spec in kwargs["volumes"] for w in ("--bind", spec.removesuffix(":rw"))]
    words += ["--pwd", docker_render.RUN_DIR_IN_CONTAINER]
    vendor = job.gpu_vendor.upper()
    words += ["--rocm"] if vendor == "AMD" else ["--nv"] if vendor == "NVIDIA" else []
    command = [*kwargs["entrypoint"], *kwargs["command"]]
    sif = posixpath.join(cluster.images, node_file_name(job.image_tag or "") + ".sif")
    return _TaskBlock(index, comment_text(job.address), shlex.quote(task.run_dir), shlex.join(words),
                      _split_env(env, index, job), image=shlex.quote(sif),
                      image_ref=shlex.quote(f"docker://{task.image_ref}"), extra={"command": shlex.join(command)})


def validate(job: JobSpec, cluster: Cluster) -> list[str]:
    """Problems rendering would meet, as messages (no I/O)."""
    problems = []
    if cluster.container != "none":
        problems += docker_render.validate_options(job)
    if cluster.container == "apptainer" and job.docker_options.strip() and not problems:
        opts = docker_render.parse_docker_options(job.docker_options)
        refused = [flag for key, flag in _NOT_FOR_APPTAINER.items() if opts.get(key)]
        if refused:
            problems.append(f"additional_docker_run_options: apptainer cannot give a container "
                            f"{', '.join(refused)} (run it with `container: docker`)")
    return problems


def render(tasks: Sequence[Task], cluster: Cluster, *, array: bool | None = None) -> Script:
    """One submission's script: one job, or (several tasks, or `array`) a job array of one image and shape."""
    if not tasks:
        raise ValueError("nothing to submit")
    first = tasks[0].job
    is_array = len(tasks) > 1 if array is None else array
    if is_array and first.nnodes > 1:
        raise ValueError("a multi-node job is submitted alone")
    options = shape_options(first, cluster)
    for task in tasks[1:]:
        if shape_options(task.job, cluster) != options or task.job.image_tag != first.image_tag:
            raise ValueError(f"{task.job.address} has another image or shape than {first.address}")
    name = submission_name(cluster, tasks)
    script = Script(name=name, text="", tasks=tuple(tasks), array=is_array)
    output = posixpath.join(cluster.logs, "%A_%a.out" if is_array else "%j.out")  # output(): known from the handle
    header = [f"--job-name={name}", f"--comment={comment(cluster, tasks)}", f"--output={output}",
              f"--chdir={cluster.base}", *options]
    if is_array:
        header.append(f"--array=0-{len(tasks) - 1}")
    for option in header:
        if re.search(r"[\s'\"\\]", option):
            raise ValueError(f"{option!r} is not one word: it cannot be an #SBATCH option")
    nnodes = max(1, first.nnodes)
    blocks = [_task_block(i, t, cluster) for i, t in enumerate(tasks)]
    text = _environment().get_template("job.sbatch.j2").render(
        cluster=cluster, header=header, tasks=blocks,
        script_path=shlex.quote(script.path(cluster)), modules=shlex.join(cluster.modules), nnodes=nnodes,
        node_exports=node_exports(first, cluster) if nnodes > 1 else [], master_port=multinode.MASTER_PORT,
        logs=shlex.quote(cluster.logs),
        secret_prefix=SECRET_ENV_PREFIX,
        driver=shlex.quote(docker_render.DRIVER), driver_name=docker_render.DRIVER_NAME,
        run_dir_in_container=shlex.quote(docker_render.RUN_DIR_IN_CONTAINER))
    return replace(script, text=text, secrets={k: v for b in blocks for k, v in b.env.secret_values.items()})


def render_submit(scripts: Sequence[tuple[str, Script]], cluster: Cluster) -> str:
    """A hand-off's `submit.sh`: puts the staged run directories and package into the shared directory,
    then submits each script (its path relative to submit.sh, and where it goes) in order."""
    return _environment().get_template("submit.sh.j2").render(
        cluster=cluster, base=shlex.quote(cluster.base), runs=shlex.quote(cluster.runs),
        package=shlex.quote(cluster.package), jobs=shlex.quote(cluster.jobs), logs=shlex.quote(cluster.logs),
        scripts=[(shlex.quote(local), shlex.quote(s.path(cluster)), s) for local, s in scripts])


# --- templates -----------------------------------------------------------------------------------


def template_dir() -> Path:
    """`templates/slurm/`: inside the installed wheel, else the checkout's top-level directory."""
    return shipped.template_dir("slurm")


@cache
def _environment() -> jinja2.Environment:
    # `[[ ]]`/`[% %]`/`[# #]`: bash's `${#x}` would open a jinja comment; the templates use `[ ]`, never `[[`.
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(template_dir())), undefined=jinja2.StrictUndefined,
                              autoescape=False, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
                              variable_start_string="[[", variable_end_string="]]", block_start_string="[%",
                              block_end_string="%]", comment_start_string="[#", comment_end_string="#]")
