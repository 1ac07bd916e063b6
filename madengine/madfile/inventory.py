"""ROCm madengine's SSH/Ansible inventory, read strictly into the hosts of an `ssh` or `ansible` target.

The format (ROCm madengine's `runners/base.py`: `NodeConfig`, `_load_inventory`):

    nodes:                         # or `gpu_nodes:`
      - hostname: gpu-node-1       # required: the host's name (here: HOST_NAME's characters)
        address: 192.168.1.101     # required
        port: 22                   # default 22
        username: madengine        # default root
        ssh_key_path: ~/.ssh/id_rsa  # default none; relative to the inventory's directory
        gpu_count: 4               # default 1
        gpu_vendor: AMD            # AMD | NVIDIA | INTEL, default AMD
        environment: {ROCR_VISIBLE_DEVICES: "0,1,2,3"}

It is read with the madfile's YAML reader (positions, budgets, duplicate keys; JSON is read as the YAML
it is, after the JSON decoder has checked its syntax). Where ROCm madengine is lenient it is refused
here, never ignored: unknown keys (ROCm's `labels` only served `--node-selector`, which madengine has
not), other top-level lists it would guess nodes from, values of the wrong type.

The inventory is read when the madfile is checked (validate, lock: its errors name the inventory's
file, line and column) and again when a backend asks for its hosts (`target_hosts`, at plan and apply),
so the hosts are always the file's current ones; they are not part of any job hash.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from madengine import limits
from madengine.errors import ConfigError, Diagnostic
from madengine.files import decode_utf8
from madengine.madfile.diagnose import close_match, describe
from madengine.madfile.locate import display_path
from madengine.madfile.model import (
    AddressText,
    AnsibleTarget,
    EnvMap,
    GpuVendor,
    Host,
    HostNameText,
    KeyPathText,
    Madfile,
    SshTarget,
    Strict,
    UserText,
)
from madengine.madfile.source import KeyPath, SourceMap, huge_number_diagnostic

_WHAT = "an inventory"
_LISTS = ("nodes", "gpu_nodes")
_RENAMED = {"name": "hostname", "user": "username", "key": "ssh_key_path", "gpus": "gpu_count", "env": "environment"}
_EXPECTED = {"string_type": "a string", "int_type": "an integer", "int_from_float": "a whole number",
             "list_type": "a list", "dict_type": "a mapping", "model_type": "a mapping",
             "model_attributes_type": "a mapping", "bool_type": "true or false"}
_BOUNDS = {"greater_than_equal": ("ge", "at least"), "less_than_equal": ("le", "at most")}


class InventoryNode(Strict):
    """One node of ROCm madengine's inventory, with its defaults."""

    hostname: HostNameText
    address: AddressText
    port: int = Field(default=22, ge=1, le=65535)
    username: UserText = "root"
    ssh_key_path: KeyPathText | None = None
    gpu_count: int = Field(default=1, ge=0)
    gpu_vendor: GpuVendor = "AMD"
    environment: EnvMap = Field(default_factory=dict)

    def host(self) -> Host:
        return Host(address=self.address, port=self.port, user=self.username, key=self.ssh_key_path,
                    gpus=self.gpu_count, name=self.hostname, env=dict(self.environment), gpu_vendor=self.gpu_vendor)


class Inventory(Strict):
    nodes: list[InventoryNode] | None = Field(default=None, min_length=1)
    gpu_nodes: list[InventoryNode] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_list(self) -> Inventory:
        if (self.nodes is None) == (self.gpu_nodes is None):
            raise ValueError("an inventory lists its hosts under exactly one of `nodes:` and `gpu_nodes:`")
        return self

    def entries(self) -> list[InventoryNode]:
        return self.nodes if self.nodes is not None else (self.gpu_nodes or [])


def read_inventory(path: Path, shown: str | None = None) -> tuple[Host, ...]:
    """The hosts of an inventory file, named and with their keys as written; a ConfigError with every
    problem (each at the inventory's line and column) otherwise."""
    return _read(path, shown or display_path(path))[0]


def target_hosts(target: SshTarget | AnsibleTarget, root: Path) -> tuple[Host, ...]:
    """The hosts a backend reaches for this target (`root`: the madfile's directory): its `hosts:`, or its
    inventory read now. Each has its `name` (default: the address) and its `key` as an absolute local path
    (`~` expanded, relative to the file that names it)."""
    if target.hosts is not None:
        return tuple(_resolved(h, root) for h in target.hosts)
    path = inventory_path(target, root)
    return tuple(_resolved(h, path.parent) for h in read_inventory(path))


def inventory_path(target: SshTarget | AnsibleTarget, root: Path) -> Path:
    assert target.inventory is not None
    return root / os.path.expanduser(target.inventory)


def _resolved(host: Host, base: Path) -> Host:
    key = None if host.key is None else os.path.normpath(os.path.join(base, os.path.expanduser(host.key)))
    return host.model_copy(update={"name": host.label, "key": key})


# --- reading --------------------------------------------------------------------------------------


def _read(path: Path, shown: str) -> tuple[tuple[Host, ...], SourceMap, str]:
    data, source, diagnostics = load_document(path, shown, "list the hosts: `nodes: [{hostname: gpu-1, address: "
                                              "10.0.0.5}]`", "`nodes:`")
    inventory: Inventory | None = None
    try:
        inventory = Inventory.model_validate(data)
    except ValidationError as exc:
        diagnostics += [diagnostic(err, source, _unknown_hint) for err in exc.errors()]
    diagnostics += _duplicate_names(data, source)
    diagnostics += _literal_secrets(data, source)
    if diagnostics or inventory is None:
        raise ConfigError.many(diagnostics)
    key = "nodes" if inventory.nodes is not None else "gpu_nodes"
    return tuple(node.host() for node in inventory.entries()), source, key


def load_document(path: Path, shown: str, example: str, top: str) -> tuple[dict[Any, Any], SourceMap, list[Diagnostic]]:
    """An inventory file (YAML, or JSON checked by the JSON decoder first) as plain data with its source
    positions, and the reader's own problems; a ConfigError when it is not a mapping at all. `example`:
    the hint for an empty or wrong file; `top`: what its top level holds, as said in a message."""
    from madengine.madfile.load import parse_yaml

    try:
        raw = limits.read_bounded(path, shown, limits.madfile_bytes(), limits.MADFILE_BYTES_ENV)
    except FileNotFoundError:
        raise ConfigError(f"the inventory {shown} does not exist", file=shown,
                          hint="`inventory:` is relative to the madfile's directory") from None
    except IsADirectoryError:
        raise ConfigError(f"the inventory {shown} is a directory", file=shown, hint="name the inventory file") \
            from None
    except OSError as exc:
        raise ConfigError(f"cannot read the inventory {shown}: {exc.strerror or exc}", file=shown) from None
    text = decode_utf8(raw, shown, what="not valid UTF-8", hint="save the inventory as UTF-8")
    if path.suffix.lower() == ".json":
        text = _json_as_yaml(text, shown)
    data, source, problems = parse_yaml(text, shown, _WHAT)
    if data is None:
        raise ConfigError(f"the inventory {shown} is empty", file=shown, line=1, column=1, hint=example)
    if not isinstance(data, dict):
        raise ConfigError.many([source.file_diagnostic(
            f"the top level must be a mapping with {top}, found {describe(data)}", example, pos=source.locate(()))])
    return data, source, list(problems)


def _json_as_yaml(text: str, shown: str) -> str:
    """A JSON inventory's syntax checked by the JSON decoder (its own messages), then its text for the
    YAML reader: tabs between tokens, which YAML refuses as indentation, become spaces (JSON has none
    inside strings, so columns stay)."""
    from madengine.mad.jsonlist import TooDeepError, loads

    try:
        loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"invalid JSON: {exc.msg}", file=shown, line=exc.lineno, column=exc.colno,
                          hint="fix the JSON syntax here") from None
    except TooDeepError:
        raise ConfigError(f"the JSON is nested more than {limits.MAX_DEPTH} levels deep", file=shown,
                          hint="an inventory needs a few levels; this limit is fixed") from None
    except ValueError:  # a number of thousands of digits
        huge = huge_number_diagnostic(text, shown)
        if huge is None:
            raise
        raise ConfigError.many([huge]) from None
    return text.replace("\t", " ")


def _duplicate_names(data: dict[Any, Any], source: SourceMap) -> list[Diagnostic]:
    """Two nodes of one hostname (read from the plain data: reported with the inventory's other errors)."""
    out: list[Diagnostic] = []
    for key in _LISTS:
        first: dict[str, int] = {}
        nodes = data.get(key)
        for index, node in enumerate(nodes if isinstance(nodes, list) else []):
            name = node.get("hostname") if isinstance(node, dict) else None
            if not isinstance(name, str):
                continue
            folded = name.lower()  # names are file names: unique on a case-insensitive disk too
            if folded in first:
                line, column = source.locate_value((key, first[folded], "hostname")) or (None, None)
                out.append(source.diagnostic(
                    (key, index, "hostname"), f"duplicate host name `{name}` (first at line {line}:{column})",
                    "each node needs its own hostname: run directories and records are named after it",
                    at="value"))
            else:
                first[folded] = index
    return out


def _literal_secrets(data: dict[Any, Any], source: SourceMap) -> list[Diagnostic]:
    """A secret-named variable of a node's `environment` must be a reference, as in a madfile (never shown)."""
    from madengine.madfile.check import REFERENCE
    from madengine.madfile.model import is_secret_name

    out: list[Diagnostic] = []
    for key in _LISTS:
        nodes = data.get(key)
        for index, node in enumerate(nodes if isinstance(nodes, list) else []):
            env = node.get("environment") if isinstance(node, dict) else None
            for name, value in (env.items() if isinstance(env, dict) else ()):
                if isinstance(name, str) and is_secret_name(name) and isinstance(value, str) and value.strip() \
                        and not REFERENCE.fullmatch(value.strip()):
                    out.append(source.diagnostic(
                        (key, index, "environment", name), f"`{name}` looks like a secret written as a literal value",
                        f"secrets are references resolved at apply time: write `{name}: ${{env:{name}}}`", at="value"))
    return out


def diagnostic(err: Any, source: SourceMap, unknown_hint: Callable[[str, KeyPath], str]) -> Diagnostic:
    """A pydantic error of an inventory at its line and column, said as the madfile's are;
    `unknown_hint(key, path)` says what to do about an unknown key."""
    path: KeyPath = tuple(p for p in err["loc"] if isinstance(p, str | int))
    kind = err["type"]
    value = err.get("input")
    if kind == "extra_forbidden":
        key = str(path[-1])
        return source.diagnostic(path, f"unknown key `{key}`", unknown_hint(key, path))
    if kind == "missing":
        return source.diagnostic(path[:-1], f"missing required key `{path[-1]}`", f"add `{path[-1]}:` here")
    shown = "a string" if path and path[-1] == "ssh_key_path" else describe(value)  # never a key's text
    at: Literal["auto", "value"] = "auto" if isinstance(value, dict | list) else "value"
    if kind in _EXPECTED:
        hint = f'quote it: "{value}"' if kind == "string_type" and isinstance(value, int | float) else ""
        return source.diagnostic(path, f"expected {_EXPECTED[kind]}, found {shown}", hint, at=at)
    if kind == "literal_error":
        allowed = ("AMD", "NVIDIA", "INTEL")
        guess = close_match(str(value), allowed)
        return source.diagnostic(path, f"expected one of {', '.join(allowed)}, found {shown}",
                                 f"did you mean `{guess}`?" if guess else "", at=at)
    if kind in _BOUNDS:
        ctx_key, words = _BOUNDS[kind]
        return source.diagnostic(path, f"must be {words} {(err.get('ctx') or {}).get(ctx_key)}, found {value}",
                                 at=at)
    if kind == "too_short":
        return source.diagnostic(path, "must not be empty", "list at least one node", at="key")
    if kind == "value_error":
        error = (err.get("ctx") or {}).get("error")
        message = str(error) if error is not None else err["msg"]
        hint = _value_hint(path)
        return source.diagnostic(path, message, hint, at=at if path else "key")
    return source.diagnostic(path, err["msg"][:1].lower() + err["msg"][1:], at=at)


def _value_hint(path: KeyPath) -> str:
    from madengine.madfile.model import HOST_NAME_RULE, KEY_HINT

    last = path[-1] if path else None
    if last == "hostname":
        return f"the hostname names the host's files and labels: {HOST_NAME_RULE}"
    if last == "ssh_key_path":
        return KEY_HINT
    return ""


def _unknown_hint(key: str, path: KeyPath) -> str:
    if len(path) == 1:
        return "an inventory lists its hosts under `nodes:` (or ROCm's `gpu_nodes:`); nothing else is read"
    if key == "labels":
        return ("madengine does not select hosts by label (ROCm's --node-selector): every node of the inventory "
                "runs jobs; remove `labels`, or keep one inventory per target")
    if key == "password":
        return "madengine takes no passwords: give `ssh_key_path`, or leave it out to use ssh-agent"
    if key == "ssh_password":
        return "madengine takes no passwords: give `ssh_key_path`, or leave it out to use ssh-agent"
    fields = list(InventoryNode.model_fields)
    if key in _RENAMED:
        return f"in an inventory it is `{_RENAMED[key]}`"
    guess = close_match(key, fields)
    return f"did you mean `{guess}`?" if guess else f"allowed keys: {', '.join(fields)}"


# --- checking a madfile's targets ----------------------------------------------------------------


def check_inventories(madfile: Madfile, root: Path, source: SourceMap) -> list[Diagnostic]:
    """Every problem of the inventories the madfile's targets name (each at the inventory's own line
    and column; a missing or unreadable one at the madfile's `inventory:`), and of hosts whose declared
    `gpu_vendor` is not that of a context run on them."""
    out: list[Diagnostic] = []
    vendors = _context_vendors(madfile)
    for name, target in madfile.targets.items():
        if not isinstance(target, SshTarget | AnsibleTarget):
            continue
        wanted = vendors.get(name, {})
        if target.hosts is not None:
            for index, host in enumerate(target.hosts):
                out += _vendor_problems(host, wanted, source, ("targets", name, "hosts", index))
            continue
        path = inventory_path(target, root)
        try:
            hosts, inv_source, key = _read(path, display_path(path))
        except ConfigError as exc:
            out += [_pinned(d, source, ("targets", name, "inventory")) for d in exc.diagnostics]
            continue
        for index, host in enumerate(hosts):
            out += _vendor_problems(host, wanted, inv_source, (key, index))
    return out


def _pinned(d: Diagnostic, source: SourceMap, at: KeyPath) -> Diagnostic:
    """A problem with the inventory file as a whole (it is missing, a directory...) is shown at the
    madfile's `inventory:` that names it."""
    if d.line is not None:
        return d
    return source.diagnostic(at, d.message, d.hint, at="value")


def _context_vendors(madfile: Madfile) -> dict[str, dict[str, str]]:
    """target name -> {context name: its gpu_vendor} for the contexts the runs put on it, GPU ones only."""
    contexts = madfile.contexts
    targets = list(madfile.targets)
    out: dict[str, dict[str, str]] = {}
    for run in madfile.runs or []:
        for t in run.targets or targets:
            for c in run.contexts or list(contexts):
                context = contexts.get(c)
                if context is not None and context.gpu_vendor != "NONE":
                    out.setdefault(t, {})[c] = context.gpu_vendor
    if not madfile.runs:
        gpu = {c: ctx.gpu_vendor for c, ctx in contexts.items() if ctx.gpu_vendor != "NONE"}
        out = {t: dict(gpu) for t in targets}
    return out


def _vendor_problems(host: Host, wanted: dict[str, str], source: SourceMap, at: KeyPath) -> Iterable[Diagnostic]:
    if host.gpu_vendor is None:
        return []
    clashing = [c for c, vendor in wanted.items() if vendor != host.gpu_vendor]
    if not clashing:
        return []
    names = ", ".join(f"`{c}` ({wanted[c]})" for c in clashing)
    return [source.diagnostic((*at, "gpu_vendor"), f"host `{host.label}` is declared gpu_vendor "
                              f"{host.gpu_vendor}, but context {names} runs on it",
                              "run those contexts on other targets (runs: [{targets: ...}]), or correct the "
                              "host's gpu_vendor (an inventory's node is AMD unless it says otherwise)", at="value")]


__all__: Sequence[str] = ("Inventory", "InventoryNode", "check_inventories", "read_inventory", "target_hosts")
