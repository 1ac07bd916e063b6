"""Profiling and tracing tools, as MAD packages declare them in `scripts/common/tools.json`.

What ROCm madengine does (read from ROCm/madengine `src/madengine/execution/container_runner.py`
`ContainerRunner.apply_tools` / `run_pre_post_script`, and the older `src/madengine/tools/run_models.py`
`RunModels.apply_tools`; the shipped file is `src/madengine/scripts/common/tools.json`; the user guide
is `docs/profiling.md`, "Stackable Design" and "Tool Configuration Options"):

- The file is `{"tools": {"<name>": {"pre_scripts": [...], "post_scripts": [...], "cmd": "...",
  "env_vars": {...}}}}`; every key of a tool is optional. A script entry is `{"path": ..., "args": ...}`
  where `path` is relative to the package root (the container's `/myworkspace`) and `args` is one
  string (optional).
- A context selects tools with `"tools": [{"name": "rocprof"}, ...]`. An entry may override the tool's
  `cmd` (replaced) and add `env_vars` (merged over the tool's, the context winning). Nothing else in
  the entry is read.
- Tools are applied in the listed order, each one *prepending* its pre_scripts to the list built so
  far and *appending* its post_scripts. So setup runs last-listed tool first and teardown runs
  first-listed tool first (profiling.md: tools [rocprof, miopen_trace, rocblas_trace] set up as
  rocblas_trace → miopen_trace → rocprof and tear down as rocprof → miopen_trace → rocblas_trace).
  The context's own pre_scripts run after every tool's, its post_scripts before every tool's.
- `cmd` wraps the model's command: `encapsulate = cmd + " " + encapsulate` per tool, so the first
  listed tool is innermost and the last outermost; the run is `cd <run dir> && <cmds> bash <script>
  <args>`. A `cmd` equal to one already applied is skipped (newer container_runner.py: tools that
  share a wrapper such as get_library_trace.py wrap once). An empty `cmd` wraps nothing.
- `env_vars` of each tool are merged into the run's environment in tool order (later tools win).
  The context's `docker_env_vars` are passed to `docker run` after them, so they win over tools.
- A pre/post script runs as `cp -vLR <path> <run dir>` then `cd <run dir> && bash <basename> <args>`
  (timeout 600 s each). `cmd` strings refer to package files relative to the run directory, which is
  a child of the package root: `bash ../scripts/common/tools/rocprof_wrapper.sh --runtime-trace --`.
- ROCm madengine ships that tools.json (and the scripts it names) itself and copies them into the
  package's `scripts/common/` before a run; the ROCm/MAD repository has no tools.json of its own.

Differences here, on purpose: `cmd` is split with `shlex` into an argument-list prefix and is never
given to a shell, so `$(...)`, `&&` or `;` in it stay literal (ROCm madengine passes it to `bash -c`;
its own test tools use `"cmd": "echo cmd_A && "`, which therefore cannot work here and is warned
about); `args` is split the same way; environment variable names are checked (as ROCm's
`get_env_arg` does at run time) when the file is read, not mid-run.
"""

from __future__ import annotations

import itertools
import json
import posixpath
import re
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from madengine import limits
from madengine.errors import ConfigError, Diagnostic
from madengine.mad.jsonlist import KeyPositions, Lines, TooDeepError, json_type_name, loads, read_json_text
from madengine.mad.model import ENV_NAME

TOOLS_JSON = "scripts/common/tools.json"

# Keys of a tool in tools.json that ROCm madengine reads; anything else is kept and warned about.
TOOL_KEYS: tuple[str, ...] = ("pre_scripts", "post_scripts", "cmd", "env_vars")
SCRIPT_KEYS: tuple[str, ...] = ("path", "args")
# Keys of a context's `tools:` entry that ROCm madengine reads.
REQUEST_KEYS: tuple[str, ...] = ("name", "cmd", "env_vars")

# Tokens that only mean something to a shell; in an argument list they are literal text.
_SHELL_OPERATORS = frozenset({"&&", "||", ";", ";;", "|", "&", ">", ">>", "<", "<<", "2>", "2>&1", "(", ")"})


@dataclass(frozen=True)
class ToolCall:
    """One pre- or post-script: `path` relative to the package root (POSIX), `args` already split.

    It runs as MAD runs it: copied into the run directory, then `bash <basename> <args>` there.
    """

    path: str
    args: tuple[str, ...] = ()

    @property
    def argv(self) -> tuple[str, ...]:
        """The command to run inside the run directory, after copying `path` into it."""
        return ("bash", posixpath.basename(self.path), *self.args)


@dataclass(frozen=True)
class Tool:
    """One tool of tools.json. `cmd` is the raw string (None: the tool wraps nothing)."""

    name: str
    pre_scripts: tuple[ToolCall, ...] = ()
    post_scripts: tuple[ToolCall, ...] = ()
    cmd: str | None = None
    env_vars: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)  # unknown keys, kept verbatim
    line: int | None = field(default=None, compare=False)  # where the tool starts in tools.json


@dataclass(frozen=True)
class ResolvedTools:
    """A context's tools, combined in ROCm madengine's order.

    `wrappers` holds one argument list per applied `cmd`, outermost first; `command()` puts them
    in front of `bash <script> <args>`. `script_files` are the pre/post scripts (package-relative;
    they must exist); `cmd_files` are package files that a `cmd` names as `../<path>` (relative to
    the run directory), which exist only if the package ships them.
    """

    names: tuple[str, ...] = ()
    pre_scripts: tuple[ToolCall, ...] = ()
    post_scripts: tuple[ToolCall, ...] = ()
    env_vars: Mapping[str, str] = field(default_factory=dict)
    wrappers: tuple[tuple[str, ...], ...] = ()
    warnings: tuple[Diagnostic, ...] = field(default=(), compare=False)

    @property
    def cmd_prefix(self) -> tuple[str, ...]:
        """Every wrapper's argv, outermost first, flattened: what goes before `bash <script>`."""
        return tuple(arg for wrapper in self.wrappers for arg in wrapper)

    def command(self, script: str, args: Sequence[str] = ()) -> tuple[str, ...]:
        """The model's command in its run directory: `<wrappers> bash <script basename> <args>`.

        As in ROCm madengine, a `scripts` value not ending in `.sh` names a directory whose `run.sh` runs.
        """
        name = posixpath.basename(script) if script.endswith(".sh") else "run.sh"
        return (*self.cmd_prefix, "bash", name, *args)

    @property
    def script_files(self) -> tuple[str, ...]:
        """Package-relative pre/post script paths, once each, in order of first use."""
        paths = (call.path for call in (*self.pre_scripts, *self.post_scripts))
        return tuple(dict.fromkeys(p for p in paths if not posixpath.isabs(p)))

    @property
    def cmd_files(self) -> tuple[str, ...]:
        """Package-relative paths that a wrapper names as `../<path>` from the run directory."""
        found: dict[str, None] = {}
        for arg in self.cmd_prefix:
            if arg.startswith("../"):
                path = posixpath.normpath(arg[3:])
                if path not in (".", "..") and not path.startswith("../"):
                    found[path] = None
        return tuple(found)


# --- reading tools.json ---------------------------------------------------------------------------


def load_tools(package_root: Path, *, warnings: list[Diagnostic] | None = None) -> dict[str, Tool]:
    """The tools of `<package_root>/scripts/common/tools.json`, by name, in file order.

    A package without the file has no tools ({}). Invalid JSON or a malformed tool is a ConfigError
    with one diagnostic per problem, each at `scripts/common/tools.json:line:col`. Unknown keys are
    kept (`Tool.extra`) and reported once per key in `warnings`, as discovery does for models.json.
    """
    loaded = read_json_object(Path(package_root) / TOOLS_JSON, TOOLS_JSON)
    if loaded is None:
        return {}
    document, positions = loaded
    errors: list[Diagnostic] = []
    notes: list[Diagnostic] = []
    for key in document:
        if key != "tools":
            line, column = positions.position((key,))
            notes.append(Diagnostic(TOOLS_JSON, line, column, f"unknown top-level key `{key}`; ignored",
                                    key_path=key, hint='tools.json is {"tools": {"<name>": {...}}}',
                                    severity="warning"))
    table = document.get("tools")
    if not isinstance(table, dict):
        line, column = positions.position(("tools",)) if "tools" in document else (1, 1)
        raise ConfigError(
            "tools.json has no `tools` object" if table is None
            else f"`tools` must be an object of tools, not {type_name(table)}",
            file=TOOLS_JSON, line=line, column=column,
            hint='write {"tools": {"rocprof": {"cmd": "...", "pre_scripts": [...]}}}')
    too_many((("tools", name) for name in table), positions, TOOLS_JSON, "tools")
    unknown: dict[str, list[int]] = {}  # key -> [count, first line]
    tools: dict[str, Tool] = {}
    for name, raw in table.items():
        if stop_reading(errors, positions, ("tools", name), TOOLS_JSON):
            break
        tool = _read_tool(name, raw, positions, errors, unknown)
        if tool is not None:
            tools[name] = tool
    for key, (count, first_line) in unknown.items():
        notes.append(Diagnostic(TOOLS_JSON, first_line or None, None,
                                f"unknown key `{key}` in {count} tool{'' if count == 1 else 's'}; "
                                f"{'ignored' if '[]' in key else 'kept as extra'}",
                                key_path=key, hint=f"madengine understands: {', '.join(TOOL_KEYS)}",
                                severity="warning"))
    if errors:
        raise ConfigError.many(errors)
    if warnings is not None:
        warnings.extend(notes)
    return tools


def _read_tool(name: str, raw: Any, positions: KeyPositions, errors: list[Diagnostic],
               unknown: dict[str, list[int]]) -> Tool | None:
    line, _ = positions.position(("tools", name))
    ok = True

    def error(key: str | None, message: str, hint: str = "") -> None:
        nonlocal ok
        ok = False
        at_line, at_column = positions.position(("tools", name, key)) if key else (line, None)
        path = f"tools.{name}.{key}" if key else f"tools.{name}"
        errors.append(Diagnostic(TOOLS_JSON, at_line, at_column, message, key_path=path, hint=hint))

    if not isinstance(raw, dict):
        error(None, f"tool {name!r} must be an object, not {type_name(raw)}",
              'write "name": {"cmd": "...", "pre_scripts": [...], "env_vars": {...}}')
        return None
    def note_unknown(key: str) -> None:
        seen = unknown.get(key)
        if seen is None:  # where it first appears
            seen = unknown[key] = [0, positions.position(("tools", name, key.split("[", 1)[0]))[0]]
        seen[0] += 1

    pre = _read_calls(raw.get("pre_scripts"), name, "pre_scripts", error, note_unknown)
    post = _read_calls(raw.get("post_scripts"), name, "post_scripts", error, note_unknown)
    cmd = raw.get("cmd")
    if cmd is not None:
        if not isinstance(cmd, str):
            error("cmd", f"tool {name!r}: `cmd` must be a string, not {type_name(cmd)}")
            cmd = None
        else:
            try:
                split_words(cmd)
            except ValueError as exc:
                error("cmd", f"tool {name!r}: `cmd` cannot be split into arguments: {exc}",
                      "close the quote, or escape it with a backslash")
    env = read_env(raw.get("env_vars"), lambda message: error("env_vars", f"tool {name!r}: {message}"))
    extra = {key: value for key, value in raw.items() if key not in TOOL_KEYS}
    for key in extra:
        note_unknown(key)
    if not ok:
        return None
    return Tool(name=name, pre_scripts=pre, post_scripts=post, cmd=cmd, env_vars=env, extra=extra, line=line)


def _read_calls(raw: Any, name: str, key: str, error: Callable[..., None],
                unknown: Callable[[str], None]) -> tuple[ToolCall, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        error(key, f"tool {name!r}: `{key}` must be a list of {{\"path\": ..., \"args\": ...}}, "
                   f"not {type_name(raw)}")
        return ()
    calls = []
    for index, item in enumerate(raw):
        label = f"tool {name!r}: {key}[{index}]"
        if not isinstance(item, dict):
            error(key, f"{label} must be an object such as {{\"path\": \"scripts/common/pre_scripts/x.sh\"}}, "
                       f"not {type_name(item)}")
            continue
        path = item.get("path")
        if not isinstance(path, str) or not path.strip():
            error(key, f"{label} has no `path`" if path is None or path == ""
                  else f"{label}: `path` must be a string, not {type_name(path)}",
                  "give the script's path relative to the package root")
            continue

        def report(message: str, label: str = label) -> None:
            error(key, f"{label}: {message}")

        args = split_args(item.get("args"), report)
        clean = _script_path(path)
        if clean is None:
            error(key, f"{label}: `path` {path!r} leads outside the package",
                  "keep tool scripts inside the MAD package (usually under scripts/common/)")
            continue
        for extra in item:
            if extra not in SCRIPT_KEYS:
                unknown(f"{key}[].{extra}")  # ignored, as ROCm ignores it
        calls.append(ToolCall(path=clean, args=args))
    return tuple(calls)


def _script_path(path: str) -> str | None:
    """A script path as a normalized POSIX path (package-relative unless absolute); None if it escapes."""
    clean = posixpath.normpath(path.strip().replace("\\", "/"))
    if clean == ".." or clean.startswith("../"):
        return None
    return clean


def split_args(raw: Any, error: Callable[[str], None]) -> tuple[str, ...]:
    """MAD's `args` (one string, split like a shell would, without running one; or a list of strings)."""
    if raw is None:
        return ()
    if isinstance(raw, str):
        try:
            return split_words(raw)
        except ValueError as exc:
            error(f"`args` cannot be split into arguments: {exc}")
            return ()
    if isinstance(raw, list) and all(isinstance(arg, str) for arg in raw):
        return tuple(raw)
    error(f"`args` must be a string or a list of strings, not {type_name(raw)}")
    return ()


_SHLEX_BLANKS = re.compile(r"[ \t\r\n]+")  # shlex's whitespace, which is not all of str.split()'s


def split_words(text: str) -> tuple[str, ...]:
    """`shlex.split(text)`, without its character-at-a-time reading for text with no quote or backslash
    (the usual case; a megabyte of it took seconds). ValueError as shlex raises it."""
    if '"' in text or "'" in text or "\\" in text:
        return tuple(shlex.split(text))
    return tuple(word for word in _SHLEX_BLANKS.split(text) if word)


def read_env(raw: Any, error: Callable[[str], None]) -> dict[str, str]:
    """An `env_vars` object: names docker accepts, string (or number) values."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        error(f"`env_vars` must be an object of strings, not {type_name(raw)}")
        return {}
    env: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not ENV_NAME.match(key):
            error(f"`env_vars` has an invalid variable name {key!r}")
        elif isinstance(value, str):
            env[key] = value
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            env[key] = str(value)  # ROCm passes str(value) to docker
        else:
            error(f"`env_vars.{key}` must be a string, not {type_name(value)}")
    return env


# --- resolving a context's tools ------------------------------------------------------------------


def resolve_tools(requested: Sequence[Mapping[str, Any]], available: Mapping[str, Tool],
                  where: str) -> ResolvedTools:
    """Combine the tools a context asks for, in ROCm madengine's order (see the module docstring).

    `requested` are the context's `tools:` entries (`{"name": ..., "cmd": ..., "env_vars": {...}}`;
    a None `cmd` means "not given"). `where` is the key path of that list, such as
    `contexts.mi300x.tools`, used in messages. An unknown tool name, a malformed entry or a `cmd`
    that cannot be split is a ConfigError listing every problem; unknown keys of an entry are ignored
    (as ROCm does) with a warning, and so is shell syntax in a `cmd` (it stays literal).
    """
    errors: list[Diagnostic] = []
    notes: list[Diagnostic] = []
    chosen: list[_Chosen] = []
    for index, entry in enumerate(requested):
        at = f"{where}[{index}]"
        if not isinstance(entry, Mapping):
            errors.append(Diagnostic(None, None, None, f"a tool entry must be an object such as "
                                     f"{{name: rocprof}}, not {type_name(entry)}", key_path=at))
            continue
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            errors.append(Diagnostic(None, None, None, "a tool entry needs a `name`", key_path=f"{at}.name",
                                     hint=_known_hint(available)))
            continue
        tool = available.get(name)
        if tool is None:
            errors.append(_unknown_tool(name, available, f"{at}.name"))
            continue
        chosen_tool = _choose(tool, entry, at, errors, notes)
        if chosen_tool is not None:
            chosen.append(chosen_tool)
    if errors:
        raise in_order(errors)
    return _combine(chosen, notes)


@dataclass(frozen=True)
class _Chosen:
    tool: Tool
    cmd: str | None  # the raw string, after the context's override
    argv: tuple[str, ...]  # `cmd` split; () wraps nothing
    env: Mapping[str, str]


def _choose(tool: Tool, entry: Mapping[str, Any], at: str, errors: list[Diagnostic],
            notes: list[Diagnostic]) -> _Chosen | None:
    """One requested tool with the entry's overrides applied; None (errors recorded) if malformed."""
    count = len(errors)

    def fail(key: str, message: str, hint: str = "") -> None:
        errors.append(Diagnostic(None, None, None, f"tool {tool.name!r}: {message}", key_path=f"{at}.{key}",
                                 hint=hint))

    cmd = tool.cmd
    override = entry.get("cmd")
    if override is not None:
        if isinstance(override, str):
            cmd = override  # the context replaces the tool's wrapper
        else:
            fail("cmd", f"`cmd` must be a string, not {type_name(override)}")
    env = dict(tool.env_vars)
    env.update(read_env(entry.get("env_vars"), lambda message: fail("env_vars", message)))  # the context wins
    argv: tuple[str, ...] = ()
    if cmd is not None and cmd.strip():
        try:
            argv = split_words(cmd)
        except ValueError as exc:
            fail("cmd", f"`cmd` cannot be split into arguments: {exc}",
                 "close the quote, or escape it with a backslash")
        shell_only = sorted({arg for arg in argv if _needs_shell(arg)})
        if shell_only:
            notes.append(Diagnostic(
                None, None, None, f"tool {tool.name!r}: `cmd` {cmd!r} contains shell syntax "
                f"({', '.join(shell_only)}) that is passed literally: madengine runs it without a shell",
                key_path=f"{at}.cmd", severity="warning",
                hint="make `cmd` a program and its arguments; put shell logic in a wrapper script"))
    for key in entry:
        if key not in REQUEST_KEYS:
            notes.append(Diagnostic(None, None, None, f"tool {tool.name!r}: `{key}` is ignored",
                                    key_path=f"{at}.{key}", severity="warning",
                                    hint=f"a context's tool entry may set {', '.join(REQUEST_KEYS)}; "
                                         f"change the tool itself in {TOOLS_JSON}"))
    if len(errors) > count:
        return None
    return _Chosen(tool=tool, cmd=cmd, argv=argv, env=env)


def _combine(chosen: Iterable[_Chosen], notes: list[Diagnostic]) -> ResolvedTools:
    pre: list[ToolCall] = []
    post: list[ToolCall] = []
    env: dict[str, str] = {}
    wrappers: list[tuple[str, ...]] = []
    applied: set[str] = set()
    names = []
    for item in chosen:
        names.append(item.tool.name)
        pre[:0] = item.tool.pre_scripts  # each tool sets up before the ones listed earlier
        post.extend(item.tool.post_scripts)  # and tears down after them
        env.update(item.env)  # later tools win
        if not item.argv or item.cmd in applied:
            continue  # nothing to wrap, or this exact wrapper is already in place (ROCm skips it too)
        applied.add(item.cmd or "")
        wrappers.insert(0, item.argv)  # the last listed tool is the outermost wrapper
    return ResolvedTools(names=tuple(names), pre_scripts=tuple(pre), post_scripts=tuple(post), env_vars=env,
                         wrappers=tuple(wrappers), warnings=tuple(notes))


def _needs_shell(arg: str) -> bool:
    return arg in _SHELL_OPERATORS or "$" in arg or "`" in arg


def check_tool_files(resolved: ResolvedTools, package_root: Path, where: str) -> None:
    """A ConfigError naming every pre/post script of `resolved` that is not a file of the package."""
    root = Path(package_root)
    missing = [path for path in resolved.script_files if not (root / path).is_file()]
    if missing:
        raise in_order([
            Diagnostic(None, None, None, f"tool script {path} does not exist in the package", key_path=where,
                       hint=f"add it, or fix its `path` in {TOOLS_JSON}")
            for path in missing])


def in_order(diagnostics: Sequence[Diagnostic]) -> ConfigError:
    """A ConfigError keeping the diagnostics' order (`many` sorts by place, and these have none)."""
    return ConfigError(diagnostics[0].message, diagnostics=diagnostics)


def _unknown_tool(name: str, available: Mapping[str, Tool], key_path: str) -> Diagnostic:
    return Diagnostic(None, None, None, f"unknown tool {name!r}", key_path=key_path, hint=_known_hint(available, name))


def _known_hint(available: Mapping[str, Tool], name: str = "") -> str:
    if not available:
        return (f"the package has no {TOOLS_JSON}; ROCm madengine ships its own tools.json, so copy the "
                "tools you use (and their scripts) into the package's scripts/common/")
    return known_names_hint(name, available, "known tools")


def known_names_hint(name: str, known: Iterable[str], label: str) -> str:
    """`did you mean x or y? <label>: a, b, c` for a name that is not among `known` (shared with data)."""
    import difflib  # only on this error path

    names = sorted(known)
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6) if name else []
    listed = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
    return (f"did you mean {' or '.join(close)}? " if close else "") + f"{label}: {listed}"


# --- small JSON helpers shared with madengine.mad.data --------------------------------------------


# `\u0000` that is not itself escaped (`\\u0000` is a backslash and `u0000`): JSON's only way to write a NUL.
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _refuse_nul(text: str, rel_file: str) -> None:
    """A NUL in any string of tools.json or data.json: no argument, environment value, path or name can
    hold one (the process would not start), so it is refused here, where it has a line, not at apply."""
    found = list(itertools.islice(_NUL_ESCAPE.finditer(text), limits.MAX_ERRORS_PER_FILE))
    if found:
        lines = Lines(text)
        raise ConfigError.many(Diagnostic(rel_file, *lines(m.end() - 6), "a string holds a NUL byte (\\u0000)",
                                          hint="remove it: no argument, environment value or path can hold one")
                               for m in found)


def read_json_object(path: Path, rel_file: str) -> tuple[dict[str, Any], KeyPositions] | None:
    """The JSON object in `path` and where its keys are (for messages); None if the file does not exist.

    Invalid JSON, a non-object top level or unreadable bytes are a ConfigError at `rel_file:line:col`.
    """
    try:
        text = read_json_text(path, rel_file, limits.tools_data_bytes(), limits.TOOLS_DATA_BYTES_ENV)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=rel_file) from None
    _refuse_nul(text, rel_file)
    try:
        document = loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"invalid JSON: {exc.msg}", file=rel_file, line=exc.lineno, column=exc.colno,
                          hint="check for a missing comma or quote, or a trailing comma") from None
    except TooDeepError as exc:
        raise ConfigError(f"JSON {exc}", file=rel_file, line=1, column=1,
                          hint="this limit is fixed") from None
    except ValueError:  # a number of thousands of digits, which Python refuses to convert
        from madengine.madfile.source import huge_number_diagnostic

        huge = huge_number_diagnostic(text, rel_file)
        if huge is None:
            raise
        raise ConfigError.many([huge]) from None
    if not isinstance(document, dict):
        raise ConfigError(f"the top level must be a JSON object, not {type_name(document)}",
                          file=rel_file, line=1, column=1)
    return document, KeyPositions(text, document)


def too_many(entries: Iterable[tuple[str, ...]], positions: KeyPositions, rel_file: str, what: str) -> None:
    """A ConfigError at the first of `entries` (key paths, in file order) past `limits.MAX_JSON_ENTRIES`,
    before any entry is read."""
    import itertools

    limit = limits.MAX_JSON_ENTRIES
    first_over = next(itertools.islice(entries, limit, None), None)
    if first_over is not None:
        line, column = positions.position(first_over)
        raise ConfigError(f"more than {limit:,} {what}", file=rel_file, line=line, column=column,
                          hint="this limit is fixed; real files have tens")


def stop_reading(errors: list[Diagnostic], positions: KeyPositions, entry: tuple[str, ...], rel_file: str) -> bool:
    """Whether a file has `limits.MAX_ERRORS_PER_FILE` errors before `entry`, noted as models.json does."""
    if len(errors) < limits.MAX_ERRORS_PER_FILE:
        return False
    errors.append(Diagnostic(rel_file, positions.position(entry)[0], None,
                             f"{limits.MAX_ERRORS_PER_FILE} errors before this entry; the rest of the file is "
                             "not read", hint="fix these first"))
    return True


def type_name(value: Any) -> str:
    """`a string`, `an object`, `null`: a JSON value's kind, as a message says it."""
    name = json_type_name(value)
    if name == "null":
        return name
    return ("an " if name[0] in "aeiou" else "a ") + name

