"""Run a MAD `scripts/<dir>/get_models_json.py` and collect the models its `list_models()` returns.

The script is the package's code, untrusted by madengine: it runs in a child process (one for all the
scripts of one discovery; `run_scripts`), so it cannot hang madengine (each script has a timeout),
end it (`os._exit(0)` ends only the child, and is an error), or write into madengine's output (the
child's stdout is its stderr; the models come back as JSON on a pipe of their own).

Semantics follow ROCm madengine: every returned model must be a `CustomModel` (either import path,
they are one class); its name is prefixed with `<dir>/` before `update_model()` is called, and the
name and tags it had before `update_model()` are the ones that count. Plain dicts are accepted too.

The script is loaded under a unique module name with its own directory first on `sys.path` (so it
can import helper modules next to it), and everything it imported from the package is removed from
`sys.modules` afterwards: two packages with a `helpers.py` each must not see each other's. No
bytecode is written into the package, which would change its tree hash; the script's compiled code
is cached in the user's cache directory instead (see `_ScriptLoader`).
"""

from __future__ import annotations

import dataclasses
import importlib.machinery
import importlib.util
import json
import marshal
import os
import sys
import time
import traceback
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from types import CodeType, ModuleType
from typing import IO, TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import subprocess

    from typing_extensions import Buffer  # in typeshed; no runtime dependency

from madengine import limits
from madengine.errors import Diagnostic
from madengine.utils.discover_models import CustomModel

_EXAMPLE_HINT = ("define `def list_models(): return [CustomModel(name=..., dockerfile=..., scripts=...)]` "
                 "with `from madengine.utils.discover_models import CustomModel`")


class _ScriptLoader(importlib.machinery.SourceFileLoader):
    """Loads a get_models_json.py with its bytecode cached outside the MAD package.

    Python's own cache would write `__pycache__` into the package (changing its tree hash), and
    compiling from source every time costs more than the rest of discovery for scripts with large
    tables. The code is cached in the user's cache directory, keyed by the script's path and content
    and the interpreter's bytecode version, so a cached entry is never stale. A cache that cannot be
    read or written is simply not used.
    """

    def __init__(self, fullname: str, path: str, cache_dir: str | None) -> None:
        super().__init__(fullname, path)
        self.cache_dir = cache_dir

    def get_code(self, fullname: str) -> CodeType:
        source = self.get_data(self.path)
        cache_file = None
        if self.cache_dir:
            import hashlib  # OpenSSL's start-up cost only for packages with dynamic models

            key = hashlib.sha256(importlib.util.MAGIC_NUMBER + os.fsencode(self.path) + b"\0" + source)
            cache_file = os.path.join(self.cache_dir, key.hexdigest()[:40] + ".pyc")
            try:
                with open(cache_file, "rb") as f:
                    code = marshal.loads(f.read())
                if isinstance(code, CodeType):
                    return code
            except (OSError, ValueError, EOFError, TypeError):
                pass
        code = self.source_to_code(source, self.path)
        if cache_file:
            _write_atomically(cache_file, marshal.dumps(code))
        return code

    def set_data(self, path: str, data: Buffer, *, _mode: int = 0o666) -> None:
        return None  # never write __pycache__ into the package


def bytecode_cache_dir() -> str | None:
    """Where compiled get_models_json.py scripts are cached: $MADENGINE_CACHE_DIR/bytecode, else
    $XDG_CACHE_HOME/madengine/bytecode or ~/.cache/madengine/bytecode. MADENGINE_CACHE_DIR set to
    an empty string turns the cache off."""
    configured = os.environ.get("MADENGINE_CACHE_DIR")
    if configured is not None:
        return os.path.join(configured, "bytecode") if configured else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "madengine", "bytecode")


def _write_atomically(path: str, data: bytes) -> None:
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(temporary, "wb") as f:
            f.write(data)
        os.replace(temporary, path)
    except OSError:
        with suppress(OSError):
            os.remove(temporary)


class Script(NamedTuple):
    path: str  # absolute
    rel_file: str  # for messages: scripts/<dir>/get_models_json.py
    directory: str  # <dir>, the prefix of its models' names


class ScriptResult(NamedTuple):
    models: list[tuple[int, dict[str, Any]]]  # (position in list_models(), models.json-like entry)
    errors: list[Diagnostic]


_TIMEOUT_HINT = ("fix the script, or give it longer with `limits.script_timeout` in the madfile "
                 "(MADENGINE_SCRIPT_TIMEOUT without one)")
_ANSWER_HINT = "list_models() must return; the script must not end the process"
_STDERR_TAIL_BYTES = 64 * 1024  # what is passed on to madengine's stderr of one child's output, at most


class RunningScripts:
    """The scripts of one discovery, started in a child process at once so that they run while
    madengine reads the package's models.json files; `results()` waits for them. Leaving the `with`
    block kills whatever still runs (an error or an interrupt in between included)."""

    def __init__(self, scripts: Sequence[Script], timeout: float) -> None:
        self.scripts, self.timeout = scripts, timeout
        self._first = _Child(scripts) if scripts else None

    def __enter__(self) -> RunningScripts:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._first is not None:
            self._first.kill()

    def results(self) -> list[ScriptResult]:
        """The models of each script, each script given `timeout` seconds.

        A script that hangs, ends the process, or answers what madengine cannot read gets an error
        naming it with the last lines of its stderr; the scripts after it run in a new child.
        """
        results: list[ScriptResult] = []
        while len(results) < len(self.scripts):
            child = self._first or _Child(self.scripts[len(results):])
            self._first = None
            try:
                results += child.finish(self.timeout)
            finally:
                child.kill()
        return results


class _Child:
    """One child process running `scripts` in order, its stderr in a temporary file."""

    def __init__(self, scripts: Sequence[Script]) -> None:
        # Imported here: the child process imports this module too, and needs none of them.
        import subprocess
        import tempfile

        self.scripts = scripts
        env = dict(os.environ)
        # The scripts import madengine.utils.discover_models: this madengine, wherever it was imported from.
        here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH", "")) if p)
        command = [sys.executable, "-c", "from madengine.mad.dynamic import child_main; child_main()",
                   json.dumps([list(s) for s in scripts])]
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by kill(), after the child is gone
        # Its own session: a timeout kills the script's own children too, and a Ctrl-C is madengine's.
        self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.stderr, env=env, start_new_session=True)

    def kill(self) -> None:
        """Nothing of the scripts outlives this (idempotent)."""
        import signal

        if self.proc.returncode is None:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.stderr.close()

    def finish(self, timeout: float) -> list[ScriptResult]:
        """Results of the scripts in order, up to and including the first that does not report."""
        import signal
        import subprocess

        assert self.proc.stdout is not None
        scripts, stderr = self.scripts, self.stderr
        results, failure, started_at = _read_results(self.proc, self.proc.stdout, scripts, timeout, stderr)
        if failure is None:
            with suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        with suppress(ProcessLookupError, PermissionError):  # what the scripts left running
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        output = _read_tail(stderr, 0)
        if output.strip():
            sys.stderr.write(output if output.endswith("\n") else output + "\n")  # never into stdout
            sys.stderr.flush()
        if failure is not None:
            what, hint = failure
            tail = _last_lines(_read_tail(stderr, started_at))
            results.append(ScriptResult([], [Diagnostic(
                scripts[len(results)].rel_file, None, None,
                f"the script {what}" + (f"; its last output: {tail}" if tail else ""), hint=hint)]))
        return results


def _read_results(proc: subprocess.Popen[bytes], pipe: IO[bytes], scripts: Sequence[Script], timeout: float,
                  stderr: IO[bytes]) -> tuple[list[ScriptResult], tuple[str, str] | None, int]:
    """The child's JSON lines, one per script, each within `timeout` of the one before; then what went
    wrong with the next script (None: nothing), with a hint, and where its stderr output starts.

    An answer is at most `limits.input_bytes()`, like a models.json: each byte is read and searched once."""
    import selectors

    results: list[ScriptResult] = []
    started_at, buffer, searched = 0, bytearray(), 0  # buffer[:searched] holds no newline
    limit = limits.input_bytes()
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(pipe, selectors.EVENT_READ)
        while len(results) < len(scripts):
            end = buffer.find(b"\n", searched)
            if (end if end >= 0 else len(buffer)) > limit:
                return results, (f"answered more than {limits.size_text(limit)} of models; the limit is "
                                 f"{limits.size_text(limit)}",
                                 f"set {limits.INPUT_BYTES_ENV} (in bytes) to raise it"), started_at
            if end >= 0:
                line = bytes(buffer[:end])
                del buffer[:end + 1]
                searched, started_at = 0, _size(stderr)
                result = _decode(line, scripts[len(results)])
                if result is None:
                    return results, ("answered with output madengine cannot read", _ANSWER_HINT), started_at
                results.append(result)
                deadline = time.monotonic() + timeout
                continue
            searched = len(buffer)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                return results, (f"did not finish within {timeout:g} s", _TIMEOUT_HINT), started_at
            chunk = os.read(pipe.fileno(), 1 << 16)
            if not chunk:
                code = proc.wait()
                return results, ((f"ended the process (exit code {code}) before list_models() returned" if code >= 0
                                  else f"was killed by signal {-code} before list_models() returned"),
                                 _ANSWER_HINT), started_at
            buffer += chunk
    return results, None, started_at


def _size(file: IO[bytes]) -> int:
    return os.fstat(file.fileno()).st_size


def _read_tail(file: IO[bytes], start: int) -> str:
    file.seek(max(start, _size(file) - _STDERR_TAIL_BYTES))
    data: bytes = file.read()
    return data.decode("utf-8", errors="replace")


def _last_lines(text: str, count: int = 3) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    tail = " | ".join(lines[-count:])
    return tail if len(tail) <= 300 else "..." + tail[-297:]


def _decode(line: bytes, script: Script) -> ScriptResult | None:
    try:
        record = json.loads(line)
        models = [(int(index), dict(entry)) for index, entry in record["models"]]
        errors = [Diagnostic(**fields) for fields in record["errors"]]
    except (ValueError, TypeError, KeyError, RecursionError):
        return None
    if any(d.file != script.rel_file for d in errors):
        return None
    return ScriptResult(models, errors)


def child_main() -> None:
    """The child process: run each script of argv[1] and write one JSON line per script to stdout."""
    from madengine.mad.jsonlist import too_deep

    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # the scripts' prints, and their children's, go to stderr: never to madengine's stdout
    sys.stdout = sys.stderr
    for path, rel_file, directory in json.loads(sys.argv[1]):
        errors: list[Diagnostic] = []
        models = []
        for index, entry in load_dynamic_models(path, rel_file, directory, errors):
            try:
                json.dumps(entry)
                if too_deep(entry):
                    raise ValueError(f"nested more than {limits.MAX_DEPTH} levels deep")
            except (TypeError, ValueError, RecursionError) as exc:
                reason = str(exc) if not isinstance(exc, RecursionError) else "nested too deeply"
                errors.append(Diagnostic(rel_file, None, None,
                                         f"list_models()[{index}] holds a value that is not JSON data: {reason}",
                                         hint="a model's fields are strings, numbers, booleans, lists and dicts"))
                continue
            models.append((index, entry))
        sys.stderr.flush()
        out.write(json.dumps({"models": models, "errors": [dataclasses.asdict(d) for d in errors]}) + "\n")
        out.flush()


def load_dynamic_models(script: str, rel_file: str, directory: str,
                        errors: list[Diagnostic]) -> list[tuple[int, dict[str, Any]]]:
    """The models a get_models_json.py declares: (position in the list that `list_models()`
    returned, models.json-like dict with the model's final name). Problems are appended to `errors`."""
    script = os.path.abspath(script)
    try:
        with _loaded_module(script, rel_file) as module:
            return _collect(module, script, rel_file, directory, errors)
    except _ScriptError as exc:
        errors.append(exc.diagnostic)
        return []


class _ScriptError(Exception):
    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


@contextmanager
def _loaded_module(script: str, rel_file: str) -> Iterator[ModuleType]:
    script_dir = os.path.dirname(script)
    module_name = f"_madengine_mad_dynamic_{zlib.crc32(script.encode()):08x}"
    loader = _ScriptLoader(module_name, script, bytecode_cache_dir())
    spec = importlib.util.spec_from_file_location(module_name, script, loader=loader)
    if spec is None:  # pragma: no cover - only for paths without a usable suffix
        raise _ScriptError(Diagnostic(rel_file, None, None, "cannot load the script"))
    module = importlib.util.module_from_spec(spec)
    modules_before = set(sys.modules)
    sys.modules[module_name] = module  # dataclasses defined in the script look their module up here
    sys.path.insert(0, script_dir)
    wrote_bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # nor for the helper modules it imports from the package
    try:
        try:
            loader.exec_module(module)
        except (Exception, SystemExit) as exc:
            raise _script_error(exc, script, "running the script raised", rel_file) from None
        yield module
    finally:
        sys.dont_write_bytecode = wrote_bytecode
        if script_dir in sys.path:
            sys.path.remove(script_dir)
        _forget_modules(modules_before, module_name, script_dir)


def _forget_modules(before: set[str], module_name: str, script_dir: str) -> None:
    """Drop the script's module and every module it imported from the package itself."""
    sys.modules.pop(module_name, None)
    prefix = script_dir + os.sep
    for name in set(sys.modules) - before:
        file = getattr(sys.modules[name], "__file__", None)
        if file and os.path.abspath(file).startswith(prefix):
            del sys.modules[name]


def _collect(module: ModuleType, script: str, rel_file: str, directory: str,
             errors: list[Diagnostic]) -> list[tuple[int, dict[str, Any]]]:
    list_models = getattr(module, "list_models", None)
    if not callable(list_models):
        raise _ScriptError(Diagnostic(rel_file, None, None, "the script defines no `list_models()` function",
                                      hint=_EXAMPLE_HINT))
    try:
        returned = list_models()
    except (Exception, SystemExit) as exc:
        raise _script_error(exc, script, "list_models() raised", rel_file) from None
    if not isinstance(returned, (list, tuple)):
        raise _ScriptError(Diagnostic(rel_file, None, None,
                                      f"list_models() returned a {type(returned).__name__}, not a list",
                                      hint=_EXAMPLE_HINT))
    if len(returned) > limits.models():
        raise _ScriptError(Diagnostic(rel_file, None, None, f"list_models() returned {len(returned):,} models; "
                                      f"a package may have {limits.models():,}",
                                      hint=f"set {limits.MODELS_ENV} to raise the limit"))
    entries = [(index, _entry_of(item, index, script, rel_file, directory, errors))
               for index, item in enumerate(returned)]
    return [(index, entry) for index, entry in entries if entry is not None]


def _entry_of(item: Any, index: int, script: str, rel_file: str, directory: str,
              errors: list[Diagnostic]) -> dict[str, Any] | None:
    if isinstance(item, dict):
        entry = dict(item)
        if isinstance(entry.get("name"), str):
            entry["name"] = f"{directory}/{entry['name']}"
        return entry
    if not isinstance(item, CustomModel):
        errors.append(Diagnostic(rel_file, None, None,
                                 f"list_models()[{index}] is a {type(item).__name__}, not a CustomModel",
                                 hint="subclass or instantiate madengine.utils.discover_models.CustomModel"))
        return None
    if isinstance(item.name, str):
        item.name = f"{directory}/{item.name}"  # as ROCm madengine does, before update_model()
    name, tags = item.name, list(item.tags) if isinstance(item.tags, list) else item.tags
    try:
        item.update_model()
        entry = _fields_of(item)
    except (Exception, SystemExit) as exc:
        what = f"model {name!r}: update_model() raised"
        errors.append(_script_error(exc, script, what, rel_file).diagnostic)
        return None
    if not isinstance(entry, dict):
        errors.append(Diagnostic(rel_file, None, None,
                                 f"model {name!r}: to_dict() returned a {type(entry).__name__}, not a dict"))
        return None
    entry["name"], entry["tags"] = name, tags  # changing them in update_model() has no effect
    return entry


def _fields_of(model: CustomModel) -> Any:
    """`model.to_dict()`, read straight from the instance when that is what to_dict would return."""
    state = vars(model)
    if type(model).to_dict is CustomModel.to_dict and state.keys() == type(model).__dataclass_fields__.keys():
        return dict(state)  # only dataclass fields, no ClassVar: as to_dict, without its per-field work
    return model.to_dict()


def _script_error(exc: BaseException, script: str, what: str, file: str) -> _ScriptError:
    """A one-line diagnostic for an exception raised by user code, at the script's line."""
    if isinstance(exc, SyntaxError) and exc.filename and os.path.abspath(exc.filename) == script:
        return _ScriptError(Diagnostic(file, exc.lineno, exc.offset, f"{what} SyntaxError: {exc.msg}"))
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == script:
            line = frame.lineno
    detail = str(exc)
    message = f"{what} {type(exc).__name__}" + (f": {detail}" if detail else "")
    return _ScriptError(Diagnostic(file, line, None, message))
