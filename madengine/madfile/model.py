"""The madfile.yaml format, version 1 (DESIGN §2), as strict pydantic models.

`extra="forbid"` everywhere: a misplaced key is an error, never silently ignored. The JSON Schema in
`schemas/madfile.schema.json` is generated from these classes (`python -m madengine.madfile.schema`).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from madengine import limits as _limits
from madengine.mad.model import ENV_NAME, INT64_MAX, MAX_NODES
from madengine.madfile.names import baseline_name_problem
from madengine.madfile.percent import PATTERN as PERCENT_PATTERN
from madengine.madfile.percent import Percent, parse_percent

FORMAT_VERSION = 1

# What a madfile without `contexts` / `targets` gets (DESIGN §2); runs may name them then.
DEFAULT_CONTEXT = "default"
DEFAULT_TARGET = "local"

# Environment and build-arg names whose values are secrets: a madfile holds only references to them
# (`${env:NAME}`), and messages never repeat their values.
_SECRET_NAME = re.compile(r"(?:^|_)(?:TOKEN|PASSWORD|PASSWD|SECRETS?|API_?KEY|ACCESS_KEY|PRIVATE_KEY)(?:_|$)",
                          re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))

Scalar = str | int | float | bool


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False, defer_build=True, strict=True)


# --- models ---------------------------------------------------------------------------------------


class SelectModels(Strict):
    """Models picked from the MAD package by tag, with ROCm madengine's `--tags` semantics."""

    select: str | list[str] = Field(description="MAD tags: a name, a tag, `all`, `dir/name`, `dir/all`, "
                                                "`name:k=v:flag`; a list or a comma-separated string")
    params: dict[str, Scalar | list[Scalar]] = Field(
        default_factory=dict, description="matrix: one model per combination, passed as `--key value`")

    def tags(self) -> list[str]:
        items = [self.select] if isinstance(self.select, str) else list(self.select)
        return [t.strip() for item in items for t in item.split(",") if t.strip()]


class InlineModel(Strict):
    """A model declared in the madfile, with the fields of a models.json entry."""

    name: str
    dockerfile: str | None = Field(default=None, description="a prefix: every <prefix>.*.Dockerfile")
    scripts: str
    args: str = ""
    n_gpus: int = Field(default=1, description="GPUs the model needs (per node); -1 = all of the host's")
    nnodes: int = Field(default=1, ge=1, le=MAX_NODES, description="nodes one run spans (a slurm or kubernetes "
                        "target): the script is started once per node, with MASTER_ADDR and NODE_RANK set")
    timeout: int = Field(default=-1, description="seconds; -1 = the default (7200)")
    tags: list[str] = Field(default_factory=list)
    owner: str = ""
    training_precision: str = ""
    multiple_results: str = ""
    data: str = ""
    # Not here, though models.json has them: `url` (read by nothing) and `skip_gpu_arch` (madengine does
    # not detect GPU architectures, so it could not skip one): a madfile accepts nothing it ignores.
    dockercontext: str = ""
    additional_docker_run_options: str = ""
    env_vars: dict[str, str] = Field(default_factory=dict)
    params: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)

    @field_validator("n_gpus", mode="before", json_schema_input_type=int | str)
    @classmethod
    def _n_gpus_from_string(cls, v: Any) -> Any:
        return n_gpus_value(v)  # its range is checked by check.py, with the numbers written as numbers


_INT_TEXT = re.compile(r"\s*-?\d+\s*")
_INT64_DIGITS = len(str(INT64_MAX))


def n_gpus_value(value: Any) -> Any:
    """`n_gpus` as a model has it: models.json writes it as a string ("-1") and a madfile may too, read
    as an int; any other value as it is.

    ValueError for a string of more digits than a 64-bit number has: refused before int(), which
    would refuse thousands of digits in Python's words (sys.set_int_max_str_digits)."""
    if isinstance(value, str) and _INT_TEXT.fullmatch(value):
        digits = len(value.strip().lstrip("-"))
        if digits > _INT64_DIGITS:
            raise ValueError(f"the number is too large ({digits} digits; numbers must fit in 64 bits)")
        return int(value)
    return value


def model_entry_kind(value: Any) -> str | None:
    """Which kind of `models:` entry this is: `select` if it has a `select` key, else `inline`.

    Dispatching on the key (instead of letting pydantic try both) keeps errors about one entry
    about that entry's kind, not a pair of confusing per-member errors.
    """
    if isinstance(value, SelectModels):
        return "select"
    if isinstance(value, InlineModel):
        return "inline"
    if isinstance(value, dict):
        return "select" if "select" in value else "inline"
    return None


ModelEntry = Annotated[
    Annotated[SelectModels, Tag("select")] | Annotated[InlineModel, Tag("inline")],
    Discriminator(model_entry_kind, custom_error_type="model_entry",
                  custom_error_message="a model entry must be a mapping"),
]


# --- contexts -------------------------------------------------------------------------------------


class Tool(Strict):
    name: str
    cmd: str | None = None
    env_vars: dict[str, str] = Field(default_factory=dict)


class Script(Strict):
    """A pre/post script with arguments, as ROCm madengine's additional context and tools.json write it."""

    path: str = Field(description="relative to the madfile's directory; inside the project or the package")
    args: str | list[str] = Field(default="", description="a string split like a shell would (without one), "
                                                          "or a list of arguments")


ScriptEntry = str | Script


# Host facts a job's last success is compared with at plan time (`madengine.facts.FACT_KEYS` names the
# same five): a fact named in `rerun_on` that changed plans the job `~ rerun`.
FactName = Literal["gpu_arch", "driver", "rocm", "cuda", "docker"]
FACT_NAMES: tuple[FactName, ...] = get_args(FactName)


def _no_duplicate_facts(value: list[FactName] | None) -> list[FactName] | None:
    if value is not None:
        seen: set[str] = set()
        for name in value:
            if name in seen:
                raise ValueError(f"`{name}` is listed twice in rerun_on")
            seen.add(name)
    return value


def _rerun_on() -> Any:
    return Field(default=None, description="the host facts whose change reruns a job that succeeded: any of "
                 f"{', '.join(FACT_NAMES)}; `[]`: none; unset: the default (gpu_arch, driver, rocm, cuda). A "
                 "context's wins over its target's. Not part of job hashes: it decides when to rerun, not what "
                 "a job computes")


RerunOn = Annotated[list[FactName] | None, AfterValidator(_no_duplicate_facts)]


class Context(Strict):
    gpu_vendor: Literal["AMD", "NVIDIA", "INTEL", "NONE"] = "NONE"
    guest_os: str = "UBUNTU"
    docker_build_arg: dict[str, str] = Field(default_factory=dict)
    docker_env_vars: dict[str, str] = Field(default_factory=dict)
    docker_mounts: dict[str, str] = Field(default_factory=dict, description="host path -> container path")
    tools: list[Tool] = Field(default_factory=list)
    pre_scripts: list[ScriptEntry] = Field(default_factory=list, description="run before the model, in its "
                                           "run directory: a path, or {path, args}")
    post_scripts: list[ScriptEntry] = Field(default_factory=list, description="run after the model (after a "
                                            "failure too): a path, or {path, args}")
    timeout_multiplier: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    match: dict[str, Scalar] = Field(default_factory=dict,
                                     description="free-form keys tested by Dockerfiles' # CONTEXT headers")
    rerun_on: RerunOn = _rerun_on()

    def match_keys(self) -> dict[str, Any]:
        """What a Dockerfile's `# CONTEXT` header is compared with."""
        return {"gpu_vendor": self.gpu_vendor, "guest_os": self.guest_os, **self.match}


# --- targets --------------------------------------------------------------------------------------


def _host_gpus() -> Any:
    return Field(default=None, ge=0, description="GPUs of the host, for scheduling: a job with n_gpus k "
                 "waits for k free ones; unset: jobs are not limited by GPUs")


# A host's name is a file name component (run directories, logs) and a label value (containers,
# state rows): 1-63 letters, digits, `.`, `_` or `-`, beginning and ending with a letter or digit
# (a Kubernetes label value's rule, which also rules out `.`, `..` and a leading `-`).
HOST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?\Z")
HOST_NAME_RULE = "1-63 letters, digits, `.`, `_` or `-`, beginning and ending with a letter or digit"
# A DNS name or an IPv4 address; IPv6 is checked by `ipaddress`. Never a leading `-`: ssh would read an option.
_ADDRESS = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,252})\Z")
# A login name (POSIX portable characters), never a leading `-` or an `@`.
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}\Z")
KEY_HINT = ("give the path of a private key file (`~` allowed), or leave `key` out to use ssh-agent and "
            "~/.ssh's default keys, as `ssh` does")
PASSWORD_HINT = ("madengine takes no passwords: give `key:` (the path of a private key file), or leave it out "
                 "to use ssh-agent and ~/.ssh's default keys")


def _host_name(value: str) -> str:
    if not HOST_NAME.match(value):
        raise ValueError(f"`{value}` cannot name a host (its name names files and labels)")
    return value


def _address(value: str) -> str:
    if _ADDRESS.match(value):
        return value
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"`{value}` is not a host name or an IP address") from None
    return value


def _user(value: str) -> str:
    if not _USER.match(value):
        raise ValueError(f"`{value}` is not a user name (letters, digits, `.`, `_`, `-`; not beginning with `-`)")
    return value


def looks_like_key_material(value: str) -> bool:
    """A private key pasted where its path belongs (messages must never repeat it)."""
    return "\n" in value or "-----BEGIN" in value or "PRIVATE KEY" in value


def _key_path(value: str) -> str:
    if looks_like_key_material(value):
        raise ValueError("`key` holds a private key itself; it must be the path of a key file")
    if not value.strip():
        raise ValueError("`key` is empty")
    return value


def _env(value: dict[str, str]) -> dict[str, str]:
    for name in value:
        if not ENV_NAME.match(name):
            raise ValueError(f"`{name}` is not a valid environment variable name (letters, digits and `_`, "
                             "not beginning with a digit)")
    return value


HostNameText = Annotated[str, AfterValidator(_host_name)]
AddressText = Annotated[str, AfterValidator(_address)]
UserText = Annotated[str, AfterValidator(_user)]
KeyPathText = Annotated[str, AfterValidator(_key_path)]
EnvMap = Annotated[dict[str, str], AfterValidator(_env)]
GpuVendor = Literal["AMD", "NVIDIA", "INTEL"]


class LoginHost(Strict):
    """A machine madengine logs in to (a SLURM login node)."""

    address: AddressText
    user: UserText | None = Field(default=None, description="default: ssh's (the local user, or ~/.ssh/config)")
    port: int = Field(default=22, ge=1, le=65535)
    key: KeyPathText | None = Field(default=None, description="the path of a private key file, relative to the "
                                    "file that names it (`~` expanded); unset: ssh-agent and ~/.ssh's default "
                                    "keys. Never the key itself, and there is no password")
    gpus: int | None = _host_gpus()


class Host(LoginHost):
    """A host that runs jobs (`ssh`, `ansible`): also named, with an environment and a GPU vendor."""

    name: HostNameText | None = Field(default=None, description=f"unique within the target, {HOST_NAME_RULE}; "
                                      "default: the address")
    env: dict[str, str] = Field(default_factory=dict, description="environment of every job on this host (e.g. "
                        "ROCR_VISIBLE_DEVICES, to split one machine into two hosts)")
    gpu_vendor: GpuVendor | None = Field(default=None, description="the host's GPUs, checked against the "
                                         "gpu_vendor of the contexts run on it; unset: not checked")

    @model_validator(mode="after")
    def _named(self) -> Host:
        if self.name is None and not HOST_NAME.match(self.address):
            raise ValueError(f"the address `{self.address}` cannot name the host: give it a `name:`")
        return self

    @property
    def label(self) -> str:
        """The host's name: `name`, else its address."""
        return self.name if self.name is not None else self.address


class LocalTarget(Strict):
    backend: Literal["local"]
    gpus: int | None = _host_gpus()
    workdir: str | None = Field(default=None, description="where run directories go, relative to this file "
                                "(`~` expanded); default: .madengine/runs")
    rerun_on: RerunOn = _rerun_on()


class DockerTarget(Strict):
    backend: Literal["docker"]
    gpus: int | None = _host_gpus()
    host: str | None = Field(default=None, description="DOCKER_HOST, default: the local engine")
    network: str | None = None
    rerun_on: RerunOn = _rerun_on()


# The most jobs at once on one host: the commands one SSH connection runs side by side (OpenSSH's
# MaxSessions is 10; two channels stay free for the short commands that stop jobs and probe the host).
MAX_PARALLEL_PER_HOST = 8
MAX_PARALLEL_HINT = (f"one SSH connection runs at most {MAX_PARALLEL_PER_HOST} jobs at once on a host; "
                     f"set `max_parallel_per_host` to {MAX_PARALLEL_PER_HOST} or less")


class _HostsTarget(Strict):
    """The keys `ssh` and `ansible` share: which hosts (listed, or an inventory file) and how jobs run there."""

    hosts: list[Host] | None = Field(default=None, min_length=1, description="the hosts; or `inventory:`")
    inventory: str | None = Field(default=None, description="ROCm madengine's SSH/Ansible inventory (`nodes: "
                                  "[{hostname, address, ...}]`, YAML or JSON), relative to this file; or `hosts:`")
    host_key_check: Literal["strict", "accept-new"] = Field(
        default="strict", description="strict: the host key must be in known_hosts; accept-new: an unknown "
        "host's key is added to it. A changed key is always refused")
    container: Literal["docker", "none"] = Field(
        default="docker", description="docker: jobs run in their image on the host; none: host processes, "
        "as on `local`")
    workdir: str = Field(default="~/.madengine", description="where run directories live on the hosts")
    max_parallel_per_host: int | None = Field(
        default=None, ge=1, le=MAX_PARALLEL_PER_HOST, description="the most jobs at once on one host, besides its "
        f"GPUs, at most {MAX_PARALLEL_PER_HOST} (what one SSH connection runs at once); unset: {MAX_PARALLEL_PER_HOST}")
    rerun_on: RerunOn = _rerun_on()

    @model_validator(mode="after")
    def _hosts_or_inventory(self) -> _HostsTarget:
        if (self.hosts is None) == (self.inventory is None):
            given = "both `hosts:` and `inventory:`" if self.hosts is not None else "neither `hosts:` nor `inventory:`"
            raise ValueError(f"give exactly one of `hosts:` (a list) and `inventory:` (a file), found {given}")
        return self


class SshTarget(_HostsTarget):
    backend: Literal["ssh"]


def _extra_vars(value: dict[str, Scalar]) -> dict[str, Scalar]:
    for name in value:
        if not ENV_NAME.match(name):
            raise ValueError(f"`{name}` is not a valid Ansible variable name (letters, digits and `_`, not "
                             "beginning with a digit)")
        if name.lower().startswith("ansible_"):
            raise ValueError(f"`{name}` is an Ansible connection variable: the hosts' keys (address, port, user, "
                             "key) set those")
        if is_secret_name(name):
            raise ValueError(f"`{name}` looks like a secret: a madfile holds no secrets, and extra vars are "
                             "written to the generated files")
    return value


class AnsibleTarget(_HostsTarget):
    backend: Literal["ansible"]
    playbook_extra_vars: Annotated[dict[str, Scalar], AfterValidator(_extra_vars)] = Field(
        default_factory=dict, description="passed to the playbook as extra vars (not `ansible_*` connection "
        "variables, not secrets)")
    forks: int | None = Field(default=None, ge=1, description="hosts ansible works on at once; default: all")


# SLURM's words go into `#SBATCH` lines, which sbatch reads itself (not a shell): a strict character set
# keeps every value one word there, never a second option.
_SLURM_NAME = re.compile(r"[A-Za-z0-9_.+-]+(?:,[A-Za-z0-9_.+-]+)*\Z")  # partition, account, qos: a comma list
_SLURM_CONSTRAINT = re.compile(r"[A-Za-z0-9_.&|,:*()\[\]!-]+\Z")  # a feature expression (`mi300x&ib`)
_SLURM_TIME = re.compile(r"(?:\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d{1,2}(?::\d{1,2}(?::\d{1,2})?)?"
                         r"|UNLIMITED|INFINITE)\Z")
_SLURM_MODULE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./+-]*\Z")
_SBATCH_OPTION = re.compile(r"--[a-z][a-z0-9-]*(?:=[^\s'\"\\]+)?\Z")
# Options madengine sets in every script (what it submits, names, waits for and reads back): a target's
# `extra_sbatch` may not set them, nor those its own keys set.
SBATCH_OWN = frozenset({"array", "job-name", "comment", "output", "error", "parsable", "nodes", "ntasks",
                        "ntasks-per-node", "time", "partition", "account", "qos", "exclusive", "constraint",
                        "gpus-per-node", "chdir", "wait", "wrap", "open-mode", "export", "dependency"})
# The shared directory is written into `#SBATCH --output=` lines and scripts: a plain path (no blanks, no
# quotes, no `%`, which sbatch expands there).
_SHARED_DIR = re.compile(r"(?:/|~/|~\Z)[A-Za-z0-9_./+@-]*\Z")


def _slurm_name(value: str) -> str:
    if not _SLURM_NAME.match(value):
        raise ValueError(f"`{value}` is not a SLURM name (letters, digits, `_ . + -`; several separated by commas)")
    return value


def _slurm_constraint(value: str) -> str:
    if not _SLURM_CONSTRAINT.match(value):
        raise ValueError(f"`{value}` is not a SLURM feature expression (features joined by `&`, `|`, `,`)")
    return value


def _slurm_time(value: str) -> str:
    if not _SLURM_TIME.match(value):
        raise ValueError(f"`{value}` is not a SLURM time (minutes, MM:SS, HH:MM:SS, D-HH[:MM[:SS]] or UNLIMITED)")
    return value


def _slurm_modules(value: list[str]) -> list[str]:
    for name in value:
        if not _SLURM_MODULE.match(name):
            raise ValueError(f"`{name}` is not a module name (letters, digits, `_ . / + -`)")
    return value


def _extra_sbatch(value: list[str]) -> list[str]:
    for option in value:
        if not _SBATCH_OPTION.match(option):
            raise ValueError(f"`{option}` is not one sbatch option as `--name=value` (no blanks, no quotes)")
        name = option[2:].split("=", 1)[0]
        if name in SBATCH_OWN:
            raise ValueError(f"`--{name}` is set by madengine (or by a key of the target): it cannot be in "
                             "extra_sbatch")
    return value


def _shared_dir(value: str) -> str:
    if not _SHARED_DIR.match(value):
        raise ValueError(f"`{value}` is not an absolute path (or `~/...`) of letters, digits and `_ . / + @ -`")
    return value


class SlurmTarget(Strict):
    """A SLURM cluster: jobs become sbatch scripts (job arrays), submitted here or on a login node."""

    backend: Literal["slurm"]
    login: LoginHost | None = Field(default=None, description="the login node, reached over SSH; unset: sbatch, "
                                    "squeue and scontrol run on this machine")
    host_key_check: Literal["strict", "accept-new"] = Field(
        default="strict", description="the login node's host key, as for `ssh` targets: strict: it must be in "
        "known_hosts; accept-new: an unknown key is added to madengine's own. A changed key is always refused")
    partition: Annotated[str, AfterValidator(_slurm_name)] | None = Field(
        default=None, description="unset: the cluster's default partition")
    account: Annotated[str, AfterValidator(_slurm_name)] | None = None
    qos: Annotated[str, AfterValidator(_slurm_name)] | None = None
    time_limit: Annotated[str, AfterValidator(_slurm_time)] | None = Field(
        default=None, description="`--time` of jobs without a timeout (a job's timeout gives its own); unset: "
        "the partition's default")
    exclusive: bool = Field(default=False, description="`--exclusive`: no other job shares a node with a job")
    constraint: Annotated[str, AfterValidator(_slurm_constraint)] | None = Field(
        default=None, description="`--constraint`: node features a job needs (`mi300x`, `mi300x&ib`)")
    modules: Annotated[list[str], AfterValidator(_slurm_modules)] = Field(
        default_factory=list, description="environment modules loaded before a job (`module load ...`)")
    extra_sbatch: Annotated[list[str], AfterValidator(_extra_sbatch)] = Field(
        default_factory=list, description="more `#SBATCH` options, each `--name=value` (not those madengine sets)")
    gpus_per_node: int | None = Field(
        default=None, ge=0, description="GPUs of a node: a job asking for n GPUs gets `--gpus-per-node=n`, one "
        "asking for all (-1) this many; unset: no GPUs are requested (jobs asking for some are refused)")
    max_nodes: int | None = Field(default=None, ge=1, description="nodes the partition has: a multi-node job "
                                  "asking for more is refused at plan, not left pending; unset: not checked")
    container: Literal["docker", "apptainer", "none"] = Field(
        default="docker", description="docker: jobs run in their image, pulled from the madfile's registry on "
        "each node; apptainer: the image is pulled once into shared_dir (`apptainer pull docker://...`); none: "
        "host processes on the compute node, as on `local`")
    shared_dir: Annotated[str, AfterValidator(_shared_dir)] = Field(
        default="~/.madengine", description="a directory every node sees (on the login node when one is given): "
        "run directories, scripts, logs and results go there; `~` is the (login) user's home, which clusters "
        "share")
    array: bool = Field(default=True, description="jobs of one image and shape go in one job array")
    # No `rerun_on`: the compute nodes' facts are not known before a job runs there, so none is compared.

    @model_validator(mode="after")
    def _login_runs_nothing(self) -> SlurmTarget:
        if self.login is not None and self.login.gpus is not None:
            raise ValueError("the login node runs no jobs: give the compute nodes' GPUs as `gpus_per_node`")
        if self.login is None and "host_key_check" in self.model_fields_set:
            raise ValueError("`host_key_check` is the login node's, and there is none: give `login:`, or leave "
                             "host_key_check out (sbatch runs on this machine)")
        return self


# Kubernetes names: a DNS-1123 label (namespaces), a DNS-1123 subdomain (secrets, service accounts), a
# qualified name (label keys, resource names: `[prefix/]name`), a label value.
_K8S_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_K8S_SUBDOMAIN = re.compile(r"(?=.{1,253}\Z)[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*\Z")
_K8S_NAME_PART = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?\Z")
_K8S_LABEL_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?\Z")


def _k8s_label(value: str) -> str:
    if not _K8S_LABEL.match(value):
        raise ValueError(f"`{value}` is not a Kubernetes namespace name (at most 63 lowercase letters, digits "
                         "and `-`, beginning and ending with a letter or digit)")
    return value


def _k8s_subdomain(value: str) -> str:
    if not _K8S_SUBDOMAIN.match(value):
        raise ValueError(f"`{value}` is not a Kubernetes object name (lowercase letters, digits, `-` and `.`, "
                         "beginning and ending with a letter or digit)")
    return value


def _k8s_qualified(value: str) -> str:
    prefix, _, name = value.rpartition("/")
    if (prefix and not _K8S_SUBDOMAIN.match(prefix)) or not _K8S_NAME_PART.match(name):
        raise ValueError(f"`{value}` is not a Kubernetes qualified name (`[domain/]name`, e.g. `amd.com/gpu`)")
    return value


def _k8s_selector(value: dict[str, str]) -> dict[str, str]:
    for key, label in value.items():
        _k8s_qualified(key)
        if not _K8S_LABEL_VALUE.match(label):
            raise ValueError(f"`{label}` (of `{key}`) is not a Kubernetes label value (at most 63 letters, digits, "
                             "`-`, `_` and `.`, beginning and ending with a letter or digit)")
    return value


class Toleration(Strict):
    """A pod toleration of a node taint, as Kubernetes reads it."""

    key: Annotated[str, AfterValidator(_k8s_qualified)] | None = Field(
        default=None, description="the taint's key; unset with `operator: Exists`: every taint")
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="unset: every effect")
    toleration_seconds: int | None = Field(default=None, ge=0, description="NoExecute: how long the pod stays "
                                           "on a node tainted after it started")

    @model_validator(mode="after")
    def _consistent(self) -> Toleration:
        if self.operator == "Exists" and self.value is not None:
            raise ValueError("a toleration with `operator: Exists` has no `value`")
        if self.key is None and self.operator != "Exists":
            raise ValueError("a toleration without `key` needs `operator: Exists`")
        return self

    def to_api(self) -> dict[str, Any]:
        """The pod spec's form (camelCase, unset keys left out)."""
        out: dict[str, Any] = {"key": self.key, "operator": self.operator, "value": self.value,
                               "effect": self.effect, "tolerationSeconds": self.toleration_seconds}
        return {k: v for k, v in out.items() if v is not None}


class KubernetesTarget(Strict):
    """Jobs as batch/v1 Jobs of a Kubernetes cluster; their images are pulled from the madfile's `registry`."""

    backend: Literal["kubernetes"]
    namespace: Annotated[str, AfterValidator(_k8s_label)] = Field(default="default",
                                                                  description="where the Jobs are created")
    kubeconfig: str | None = Field(default=None, description="the kubeconfig file, relative to this file (`~` "
                                   "expanded); default: $KUBECONFIG, then ~/.kube/config")
    context: str | None = Field(default=None, description="the kubeconfig's context; default: its current one")
    gpu_resource: Annotated[str, AfterValidator(_k8s_qualified)] | None = Field(
        default=None, description="the device plugin's resource a job's n_gpus asks for; default: from the "
        "context's gpu_vendor (AMD: amd.com/gpu, NVIDIA: nvidia.com/gpu, INTEL: gpu.intel.com/i915)")
    gpus: int | None = Field(default=None, ge=0, description="GPUs of a node: what n_gpus -1 (all GPUs) asks "
                             "for; unset: a job with n_gpus -1 is an error here")
    node_selector: Annotated[dict[str, str], AfterValidator(_k8s_selector)] = Field(
        default_factory=dict, description="node labels the pods must run on")
    tolerations: list[Toleration] = Field(default_factory=list, description="taints the pods tolerate")
    image_pull_secret: Annotated[str, AfterValidator(_k8s_subdomain)] | None = Field(
        default=None, description="the name of a Secret of the namespace that logs in to the registry (a name, "
        "never the credentials)")
    service_account: Annotated[str, AfterValidator(_k8s_subdomain)] | None = Field(
        default=None, description="the pods' service account; default: the namespace's default")
    ttl_seconds: int | None = Field(default=None, ge=0, description="the cluster deletes a finished Job after "
                                    "this many seconds, if madengine has not (ttlSecondsAfterFinished)")
    # No `rerun_on`: the nodes' facts are not known before a pod runs there, so none is compared.


Target = Annotated[
    LocalTarget | DockerTarget | SshTarget | AnsibleTarget | SlurmTarget | KubernetesTarget,
    Field(discriminator="backend"),
]

# The job hash rule. A job's hash covers its context's and its target's configuration
# (`context_sha256`, `target_sha256` in the lock) minus these keys, which say where and when jobs run,
# not what they compute: adding a host to a lab, tightening host keys or parallelism, or asking for
# reruns on other facts must not rerun every job. (The facts of the host a job ran on are recorded with
# each attempt and compared at plan time instead.) Every other key counts: `container` (in an image or
# as host processes), `workdir`, `playbook_extra_vars`, `gpus`, `backend`...
HASH_EXCLUDED = frozenset({"hosts", "inventory", "host_key_check", "max_parallel_per_host", "forks", "rerun_on",
                           # kubernetes: which cluster and namespace, with what credentials and clean-up; not
                           # `gpu_resource`, `node_selector`, `tolerations` (which nodes, which devices)
                           "namespace", "kubeconfig", "context", "image_pull_secret", "service_account",
                           "ttl_seconds",
                           # slurm: where it is submitted from, where files go, how jobs are grouped and billed
                           "login", "shared_dir", "array", "account", "qos", "time_limit", "max_nodes"})


def job_config(config: Context | Target) -> dict[str, Any]:
    """What the lock hashes of a context or a target: its configuration without `HASH_EXCLUDED`."""
    return config.model_dump(mode="json", exclude=set(HASH_EXCLUDED & set(type(config).model_fields)))


def runs_in_image(target: Target) -> bool:
    """Whether a target's jobs run in a container of their image (so need one), or as host processes:
    `local`, and `ssh`/`ansible` with `container: none`."""
    return target.backend != "local" and getattr(target, "container", "docker") != "none"


def rerun_on(context: Context, target: Target) -> tuple[FactName, ...] | None:
    """The facts whose change reruns a job of this context and target: the context's `rerun_on`, else the
    target's; None when neither sets it (the default is `madengine.facts`' to decide)."""
    if context.rerun_on is not None:
        return tuple(context.rerun_on)
    chosen = getattr(target, "rerun_on", None)
    return tuple(chosen) if chosen is not None else None


# --- runs -----------------------------------------------------------------------------------------


MAX_TOLERANCE_PERCENT = 1000.0  # a lower-is-better figure may be allowed to get 11 times worse, not more


class Expect(Strict):
    """A performance gate on one model's jobs, checked when each result is recorded, at the end of
    `apply` and by `madengine check`: the job must report `metric`, within `min`/`max`, and (with
    `tolerance`) the median of its repeats must not be worse than its reference by more than the
    tolerance; an unmet gate makes apply exit 6."""

    metric: str = Field(description="the metric the job must report (`performance: <value> <metric>`); "
                                    "a gate with no bound only requires that it is reported")
    better: Literal["higher", "lower"] | None = Field(
        default=None, description="which way is an improvement (default: the madfile's `results.better` for "
        "the metric, else what the metric's name says (`latency_ms` lower, `samples_per_second` higher), else "
        "`lower` when the gate has only a `max`, else `higher`); a gate whose only bound is on the better side "
        "is refused as a likely slip (`min` is the floor of a higher-is-better metric, `max` the ceiling of a "
        "lower-is-better one)")
    # strict: `min: true` or `min: '5'` is a slip to point at, not a number to guess.
    min: float | None = Field(default=None, strict=True, allow_inf_nan=False, description="the lowest allowed value")
    max: float | None = Field(default=None, strict=True, allow_inf_nan=False, description="the highest allowed value")
    tolerance: float | None = Field(
        default=None, description="how much worse than the reference the median of the job's repeats may be, "
        "as a percentage (`5%`), in the direction of `better`; the reference is `baseline`, else the job's "
        "previous result (none yet: met, with a note)",
        json_schema_extra={"type": "string", "pattern": PERCENT_PATTERN})
    baseline: str | None = Field(default=None, description="the baseline (`baselines/<name>.json` beside "
                                 "this file, written by `madengine baseline save <name>`) that `tolerance` "
                                 "is against; default: the job's previous result")

    @field_validator("tolerance", mode="before")
    @classmethod
    def _tolerance_from_percent(cls, v: Any) -> Any:
        # Up to 100% is checked by check.py: whether more is allowed depends on `better`.
        return None if v is None else parse_percent(v, maximum=MAX_TOLERANCE_PERCENT)

    @field_validator("baseline")
    @classmethod
    def _baseline_name(cls, v: str | None) -> str | None:
        problem = baseline_name_problem(v) if v is not None else None
        if problem:
            raise ValueError(problem)
        return v


class Run(Strict):
    models: list[str] = Field(min_length=1, description="model names or tags among the madfile's models")
    contexts: list[str] | None = Field(default=None, description="default: every context")
    targets: list[str] | None = Field(default=None, description="default: every target")
    # The range checks of repeat and timeout live in check.py (one message style for every check);
    # json_schema_extra still tells editors about them.
    repeat: int = Field(default=1, description="how many times each job runs",
                        json_schema_extra={"minimum": 1})
    timeout: int | None = Field(default=None, description="seconds; overrides the model's; -1 = default")
    expect: dict[str, Expect] = Field(default_factory=dict, description="a performance gate per model of this "
                                      "run: by name, or `name[k=v]` for one params combination (which wins)")


# --- limits -----------------------------------------------------------------------------------------


class Limits(Strict):
    """Budgets that this madfile may raise. Those that bite before it is parsed (its size, YAML
    aliases and nesting) cannot be here: see MADENGINE_MAX_MADFILE_BYTES and MADENGINE_MAX_INPUT_BYTES."""

    jobs: int = Field(default=_limits.DEFAULT_JOBS, ge=1,
                      description="the most jobs the madfile may compile to (models × params × contexts × "
                                  f"targets × repeat); their addresses may take {_limits.ADDRESS_CHARS_PER_JOB} "
                                  "characters a job of it")
    script_timeout: float | None = Field(
        default=None, gt=0, le=_limits.MAX_SCRIPT_TIMEOUT, allow_inf_nan=False,
        description="seconds a MAD package's get_models_json.py may run, at most a day; default: "
                    "$MADENGINE_SCRIPT_TIMEOUT, else 30")


# --- results ---------------------------------------------------------------------------------------


class ResultsSettings(Strict):
    """How `madengine compare` (and `results --history`) judge a change between two results."""

    noise: Percent = Field(default=0.02, description="the relative change below which a difference is noise "
                           "(`2%`); the spread of a result's repeats widens it", json_schema_extra={"default": "2%"})
    better: dict[str, Literal["higher", "lower"]] = Field(
        default_factory=dict, description="which way is an improvement, per metric name (default by name: "
        "`*per_second`, `throughput`, `gflops`... higher; `latency`, `*_ms`, `time`... lower; else higher); "
        "an `expect:` gate's `better` wins for its model")


# --- the file -------------------------------------------------------------------------------------


class Madfile(Strict):
    """A madfile.yaml: which models to benchmark, in which contexts, on which targets."""

    version: Literal[1]
    name: str | None = Field(default=None, description="the project's name (shown by `validate --json`)")
    package: str | None = Field(default=None, description="a MAD package directory, relative to this file")
    registry: str | None = None
    models: list[ModelEntry] = Field(default_factory=list)
    contexts: dict[str, Context] = Field(default_factory=dict)
    targets: dict[str, Target] = Field(default_factory=dict)
    runs: list[Run] = Field(default_factory=list)
    limits: Limits = Field(default_factory=Limits)
    results: ResultsSettings = Field(default_factory=ResultsSettings)
    state: str | None = Field(default=None, description=(
        "where the state and results store is: a PostgreSQL URL (postgresql://user@host:5432/dbname; the "
        "password from PGPASSWORD or ~/.pgpass, never written here; `${env:NAME}` references are resolved) "
        "or an SQLite file path relative to this file; default .madengine/state.db. $MADENGINE_STATE_URL, "
        "$MADENGINE_STATE and --state take precedence"))

    def effective_targets(self) -> dict[str, Target]:
        """The declared targets; none declared means the embedded default, `local`."""
        return dict(self.targets) or {DEFAULT_TARGET: LocalTarget(backend="local")}
