"""What the ansible backend hands to ansible, as pure functions: an inventory, a playbook, an ansible.cfg.

Kept apart from `ansible.py` (which runs them through ansible-runner) so it is golden-tested without
hosts, and so `madengine generate ansible` writes exactly what the backend runs.

The templates are jinja2 files in the top-level `templates/ansible/` (shipped in the wheel as
`madengine/_templates/ansible/`). Nothing from a madfile or a MAD package is pasted into them as
text: every value is rendered by `yaml_value` (a JSON scalar, which is YAML, tagged `!unsafe` when it
is a string, so that ansible never evaluates a `{{ ... }}` it holds), every word of ansible.cfg's
ssh options by `shlex.quote`, and every command is an argument list run without a shell
(`argv`, `expand_argument_vars: false`). The only shell programs are the constants below; values
reach them as positional parameters, which a shell never parses.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from madengine import shipped
from madengine.backends import docker_render
from madengine.backends.base import node_file_name
from madengine.backends.specs import JobSpec

PYTHON = "/usr/bin/python3"  # the hosts' interpreter for ansible's modules (no discovery round trip)
LOG_NAME = "log"  # the fetched log, in a job's fetch directory on this machine
CSV_NAME = "results.csv"  # the fetched `multiple_results` CSV, beside it
SECRET_ENV_PREFIX = "MADENGINE_SECRET_"  # a secret's value reaches the playbook from this environment variable

# In the runs directory, for job `$1`: its run directory, just copied to `.$1.$2` (a name no earlier run
# used, so nothing stale is in it), replaces `$1`; the pid of the driver's process group goes to
# `$1.pid` (for a stop), the run's output to `$1.log`. Then the absolute run directory and the whole log
# are printed (the playbook's result carries them back). The rest of the parameters are the steps, for
# docker_render's DRIVER (`.` the run directory).
_RUN_PROLOGUE = """\
n=$1 t=$2
shift 2
d=$(pwd -P)/$n || exit
rm -rf -- "$d" "$d.log" "$d.pid" && mv -- ".$n.$t" "$d" && cd -- "$d" || exit
echo "$$" >"$d.pid" || exit
printf '%s\\n' "$d"
exec 3>&1 >"$d.log" 2>&1 </dev/null
"""
_RUN_EPILOGUE = """\
rc=$?
cat -- "$d.log" >&3
exit "$rc"
"""
HOST_DRIVER = _RUN_PROLOGUE + "(\nset -- . \"$@\"\n" + docker_render.DRIVER + ")\n" + _RUN_EPILOGUE

# As HOST_DRIVER, for a job in a container: its one step is `docker run ...`, given the run directory
# (which only the host knows) as the container's /myworkspace/run_directory. Its parameters after the
# job's: `docker run`, then `auto` (no network was asked for: `none` on an engine without a bridge
# network, as the docker backend does) or `given`, then the rest of the `docker run` arguments.
DOCKER_DRIVER = _RUN_PROLOGUE + """\
docker=$1 run=$2 network=$3
shift 3
if [ "$network" = auto ] && ! "$docker" network inspect bridge >/dev/null 2>&1; then
  set -- --network none "$@"  # an engine without a bridge network (dockerd --bridge=none)
fi
"$docker" "$run" -v "$d:""" + docker_render.RUN_DIR_IN_CONTAINER + """:rw" "$@"
""" + _RUN_EPILOGUE

# Stops a job: its container (when it has one), then its driver's process group; prints the log's path.
# $1: runs dir, $2: the job's name, $3: its container's name or empty.
STOP = """\
d=$1
case $d in "~") d=$HOME ;; "~/"*) d=$HOME/${d#"~/"} ;; /*) ;; *) d=$HOME/$d ;; esac
d=$(cd -- "$d" 2>/dev/null && pwd -P) || d=$1
if [ -n "$3" ]; then docker rm -f -- "$3" >/dev/null 2>&1; fi
if [ -s "$d/$2.pid" ]; then pg=$(cat -- "$d/$2.pid"); kill -KILL "-$pg" 2>/dev/null; rm -f -- "$d/$2.pid"; fi
printf '%s\\n' "$d/$2.log"
"""
STOP_NAME = "madengine-stop"

# Where the run directory is in the docker argv before the playbook knows it (the host's absolute path).
_RUN_DIR_SENTINEL = "/.madengine-run-dir"
_RUN_DIR_MOUNT = f"{_RUN_DIR_SENTINEL}:{docker_render.RUN_DIR_IN_CONTAINER}:rw"


class Trusted(str):
    """A template ansible evaluates, written by this module (never holding a madfile value)."""


@dataclass(frozen=True)
class InventoryHost:
    name: str  # the inventory's name of the host: the target's host name
    address: str
    port: int = 22
    user: str | None = None  # None: ssh's default
    key: str | None = None  # a private key file on this machine (absolute)


@dataclass(frozen=True)
class PlayJob:
    """One job as a play: where it runs, its run directory's name there, its command and environment."""

    address: str
    host: str
    name: str  # the run directory's name on the host (and of `<name>.log`, `<name>.pid` beside it)
    token: str  # the copy's name before it replaces the run directory: `.<name>.<token>`, new for each run
    staging: str  # the filled run directory on this machine (absolute)
    fetch_dir: str  # where the log and the results CSV come back to, on this machine (absolute)
    command: tuple[str, ...]  # run in the run directory by HOST_DRIVER, or DOCKER_DRIVER with a container
    env: tuple[tuple[str, str], ...] = ()  # the job's environment on its host (values literal)
    secret_env: tuple[str, ...] = ()  # names whose values come from SECRET_ENV_PREFIX + name on this machine
    results_csv: str = ""  # the model's `multiple_results`, relative to the run directory
    container: str | None = None  # the container's name, when the job runs in one


@dataclass(frozen=True)
class Stop:
    """Stop what a job started on its host; fetch its log when `fetch_dir` is set."""

    host: str
    name: str
    container: str | None = None
    fetch_dir: str | None = None


@dataclass(frozen=True)
class Config:
    """ansible.cfg: where ansible keeps its files on this machine, and how hosts' keys are checked."""

    known_hosts: str
    home: str | None = None  # None: ansible's default (~/.ansible), as in a generated hand-off
    control_path_dir: str | None = None
    host_key_check: str = "strict"  # strict | accept-new
    forks: int = 5


# --- values ---------------------------------------------------------------------------------------
#
# ansible templates every string of a playbook or inventory; `!unsafe` stops that. But ansible 2.19 reads a
# scalar tagged `!unsafe` as if it were plain, ignoring its quotes (`!unsafe "yes"` is true, `!unsafe "~"`
# null, `!unsafe "010"` 8), so the tag is put on the mapping or list that holds values, whose own quoted
# scalars keep their type; a lone string is tagged only when it reads as a string plain too.

# What a YAML stream may hold literally (YAML 1.1's printable set, as PyYAML and libyaml read it), less
# the line breaks YAML 1.1 folds inside a quoted scalar (NEL, LS, PS): those are escaped too.
_NOT_PRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _quoted(text: str) -> str:
    """A YAML double-quoted scalar: JSON's escapes, plus \\uXXXX for what YAML may not hold literally."""
    return _NOT_PRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(text, ensure_ascii=False))


def yaml_value(value: Any) -> str:
    """A value as one line of YAML (flow style): strings double-quoted, so each keeps its type."""
    if isinstance(value, str):
        return _quoted(value)
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value, allow_nan=False)
    if isinstance(value, Mapping):
        items = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"a mapping key must be a string, not {key!r}")
            items.append(f"{_quoted(key)}: {yaml_value(item)}")
        return "{" + ", ".join(items) + "}"
    if isinstance(value, Iterable):
        return "[" + ", ".join(yaml_value(item) for item in value) + "]"
    raise TypeError(f"cannot render {type(value).__name__} as YAML")


_YAML11_WORDS = {"y", "n", "yes", "no", "true", "false", "on", "off", "null"}  # YAML 1.1's plain booleans and null


def _reads_as_string(text: str) -> bool:
    """Plain, would YAML 1.1 read `text` as a string? Said conservatively: an absolute path, or a text
    beginning with a letter that is not one of YAML 1.1's words (numbers, dates, `~`, `<<`, `=` begin
    otherwise)."""
    return bool(text) and (text[0] == "/" or (text[0].isalpha() and text.lower() not in _YAML11_WORDS))


def unsafe_value(value: Any) -> str:
    """A value ansible takes as it is, never as a template: `!unsafe` on its mapping or list (see above)."""
    if isinstance(value, Trusted):
        raise TypeError("a template cannot be unsafe")
    if isinstance(value, str) and not _reads_as_string(value):
        raise ValueError(f"{value!r} would not read as a string under !unsafe: put it in a mapping or list")
    if isinstance(value, str | Mapping) or (isinstance(value, Iterable) and not isinstance(value, bytes)):
        return f"!unsafe {yaml_value(value)}"
    return yaml_value(value)


def environment_value(job: PlayJob) -> str:
    """The run task's environment: its values unsafe; each secret a lookup in ansible's own environment
    (`environment` takes a list of mappings, merged in order)."""
    plain = unsafe_value(dict(job.env))
    if not job.secret_env:
        return plain
    lookups = {env_name(name): Trusted(f"{{{{ lookup('env', '{SECRET_ENV_PREFIX}{name}') }}}}")
               for name in job.secret_env}
    return f"[{plain}, {yaml_value(lookups)}]"


def block_scalar(text: str, indent: int) -> str:
    """A constant script of this module as a `|` block scalar (readable in the playbook)."""
    if not text.endswith("\n") or text.endswith("\n\n") or _NOT_PRINTABLE.search(text) or "\t" in text:
        raise ValueError("a block scalar holds printable lines ending in one line break")
    pad = " " * indent
    return "|\n" + "".join(pad + line + "\n" if line else "\n" for line in text[:-1].split("\n"))[:-1]


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?\Z")


def yaml_key(value: str) -> str:
    """A mapping key madengine writes (a host's name, a variable's name): checked, never tagged."""
    if not (_NAME.match(value) or _HOST.match(value)):
        raise ValueError(f"{value!r} cannot be a host's or a variable's name in an inventory or playbook")
    return _quoted(value)


def env_name(value: str) -> str:
    """An environment variable's name, as a shell line of a comment shows it (checked, bare)."""
    if not _NAME.match(value):
        raise ValueError(f"{value!r} is not an environment variable's name")
    return value


def ini_value(value: str) -> str:
    """A value of ansible.cfg (read by configparser: `%` interpolates, `;` after a blank starts a comment)."""
    if re.search(r"[\r\n]|\s;", value) or value != value.strip():
        raise ValueError(f"{value!r} cannot be written into ansible.cfg (a line break, a `;` after a blank, "
                         "or blanks around it)")
    return value.replace("%", "%%")


# --- commands ---------------------------------------------------------------------------------------


def runs_dir(workdir: str) -> str:
    """Where run directories go on the hosts: `<workdir>/runs`; a relative workdir is in the home directory
    (`~`, which ansible's modules resolve on the host)."""
    if not workdir.startswith(("/", "~")):
        workdir = posixpath.join("~", workdir)
    return posixpath.join(workdir, "runs")


def run_args(job: PlayJob) -> list[str]:
    """The run driver's parameters: the job's name, its copy's token, then its command."""
    return [job.name, job.token, *job.command]


def container_name(workspace_id: str, attempt: str, name: str) -> str:
    """The container of one attempt of a job of one workspace (two projects may run the same job on one
    host): found again by a stop."""
    workspace = re.sub(r"[^A-Za-z0-9_.-]", "_", workspace_id)[:24]
    return f"madengine-{workspace}-{attempt or 'x'}-{name.rsplit('-', 1)[-1]}"


def stop_args(stop: Stop, workdir: str) -> list[str]:
    """STOP's parameters."""
    return [runs_dir(workdir), stop.name, stop.container or ""]


def host_steps(job: JobSpec) -> tuple[str, ...]:
    """A job as host processes (`container: none`): the steps of the MAD run protocol, as the driver takes them."""
    return tuple(docker_render.run_steps(job))


def docker_steps(job: JobSpec, *, workspace_id: str, container: str, system_gpus: int | None,
                 network: str | None = None) -> tuple[tuple[str, ...], dict[str, str]]:
    """A job in its image on the host (`container: docker`): `docker run ...` as the `ssh` backend runs it
    (docker_cli.run_argv: values passed by name, never on a command line), for DOCKER_DRIVER, which mounts
    the run directory; and the environment the docker CLI passes into the container."""
    from madengine.backends.docker_cli import run_argv

    ctx = docker_render.RunContext(workspace_id=workspace_id, run_dir_host=_RUN_DIR_SENTINEL, network=network,
                                   system_gpus=system_gpus)
    chosen = "given" if "network_mode" in docker_render.run_arguments(job, ctx) else "auto"
    argv, env = run_argv(job, ctx, name=container, remove=not job.keep_alive)
    at = argv.index(_RUN_DIR_MOUNT)  # DOCKER_DRIVER mounts the run directory, which only the host knows
    if argv[at - 1] != "--volume":
        raise ValueError(f"{job.address}: the run directory is not a --volume of `docker run`")
    del argv[at - 1:at + 1]
    return (*argv[:2], chosen, *argv[2:]), env


# --- rendering ------------------------------------------------------------------------------------


def template_dir() -> Path:
    """`templates/ansible/`: inside the installed wheel, else the checkout's top-level directory."""
    return shipped.template_dir("ansible")


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(template_dir())), undefined=jinja2.StrictUndefined,
                             autoescape=False, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
                             variable_start_string="[[", variable_end_string="]]", block_start_string="[%",
                             block_end_string="%]", comment_start_string="[#", comment_end_string="#]")
    env.filters.update(y=yaml_value, u=unsafe_value, ini=ini_value, sh=shlex.quote, key=yaml_key,
                       block=block_scalar, envname=env_name)
    return env


def render_inventory(hosts: Sequence[InventoryHost]) -> str:
    return _environment().get_template("inventory.yml.j2").render(hosts=hosts, host_vars=host_vars)


def host_vars(host: InventoryHost) -> dict[str, Any]:
    out: dict[str, Any] = {"ansible_host": host.address, "ansible_port": host.port}
    if host.user is not None:
        out["ansible_user"] = host.user
    if host.key is not None:
        out["ansible_ssh_private_key_file"] = host.key
    return {**out, "ansible_python_interpreter": PYTHON}


def render_playbook(jobs: Sequence[PlayJob], *, workdir: str, extra_vars: Mapping[str, Any] | None = None,
                    fetch_log: bool = False) -> str:
    """The jobs' plays. `fetch_log`: bring each log back to the job's fetch_dir as well (for a hand-off;
    madengine takes the log from the run's result)."""
    return _environment().get_template("playbook.yml.j2").render(
        jobs=jobs, fetch_log=fetch_log, extra_vars=dict(extra_vars or {}), log_name=LOG_NAME, csv_name=CSV_NAME,
        host_driver=HOST_DRIVER, docker_driver=DOCKER_DRIVER, secret_prefix=SECRET_ENV_PREFIX,
        runs=runs_dir(workdir), run_args=run_args, environment=environment_value)


def render_stop(stops: Sequence[Stop], *, workdir: str) -> str:
    return _environment().get_template("stop.yml.j2").render(
        stops=stops, log_name=LOG_NAME, stop_script=STOP, stop_args=lambda stop: stop_args(stop, workdir))


def render_config(config: Config) -> str:
    if config.host_key_check not in ("strict", "accept-new"):
        raise ValueError(f"host_key_check {config.host_key_check!r}")
    return _environment().get_template("ansible.cfg.j2").render(
        home=config.home, control_path_dir=config.control_path_dir, known_hosts=config.known_hosts,
        forks=int(config.forks), python=PYTHON,
        strict_host_key_checking="yes" if config.host_key_check == "strict" else "accept-new")


def job_name(address: str) -> str:
    """A job's run directory name on its host (as the other backends name theirs)."""
    return node_file_name(address)
