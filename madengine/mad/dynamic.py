"""Run a MAD `scripts/<dir>/get_models_json.py` and collect the models its `list_models()` returns.

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

import importlib.machinery
import importlib.util
import marshal
import os
import sys
import traceback
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import CodeType, ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Buffer  # in typeshed; no runtime dependency

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
