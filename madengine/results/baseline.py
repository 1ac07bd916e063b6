"""Baselines: reviewable result sets kept in the repository, `baselines/<name>.json` beside the madfile.

A baseline file is a result set's JSON form (`ResultSet.to_text()`: sorted keys, 2-space indent, one
trailing newline, nothing in it that changes between two saves of the same apply), written atomically
as the lock is. Its name is its file name: nothing inside can disagree with it. `expect:` gates measure
a `tolerance` against one, `compare` and `report` read one as any result set.

Which project a baseline belongs to is its `project`: the madfile's `name:`, or null for a madfile with
no name. A baseline is used only by the project it was saved for (equal names, or both unnamed): the
directory a project is checked out in (a CI workspace, a clone, a worktree) is no identity, and a file
copied from another project's `baselines/` would otherwise gate this one against numbers of something
else. The cost is that naming (or renaming) a project asks for its baselines to be saved again, which
the error says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from madengine.errors import ConfigError, Diagnostic, FileSystemError, UsageError
from madengine.files import write_atomic
from madengine.madfile.names import BASELINE_NAME_RULE, BASELINES_DIR, baseline_name_problem, saved_baselines
from madengine.results.gates import Gate, Reference, Verdict, check_gates, previous_references

if TYPE_CHECKING:
    from madengine.results.resultset import ResultSet
    from madengine.state.model import Attempt


def shown(name: str) -> str:
    """How messages name a baseline's file: relative to the madfile's directory."""
    return f"{BASELINES_DIR}/{name}.json"


def check_name(name: str) -> None:
    """A usage error (exit 4) for a name that is not a plain file name (`../x`, `a/b`, `.hidden`, NUL...)."""
    problem = baseline_name_problem(name)
    if problem:
        raise UsageError(problem, hint=f"a baseline name is {BASELINE_NAME_RULE}")


def path_of(root: Path, name: str) -> Path:
    check_name(name)
    return root / BASELINES_DIR / f"{name}.json"


names = saved_baselines


def missing(root: Path, name: str) -> UsageError:
    known = names(root)
    return UsageError(f"no baseline {name!r} ({shown(name)} does not exist)",
                      hint=f"saved baselines: {', '.join(known)}" if known
                      else f"save one: `madengine baseline save {name}`")


def load(root: Path, name: str, project: str | None) -> ResultSet:
    """The baseline `name` of `project`: a UsageError if there is none, a ConfigError naming the file if
    it is not a baseline madengine wrote (shape, format version) or is another project's."""
    from madengine.results.resultset import load_file

    path = path_of(root, name)
    if not path.is_file():
        if path.exists():
            raise ConfigError("not a regular file", file=shown(name),
                              hint="a baseline is a JSON file written by `madengine baseline save`")
        raise missing(root, name)
    rs = load_file(path, shown(name), kind="baseline", label=f"baseline {name}")
    check_project(rs, project, name)
    return rs


def check_project(rs: ResultSet, project: str | None, name: str) -> None:
    """A baseline of another project is refused: its `project` must be this madfile's `name:` (both null
    for an unnamed project)."""
    if rs.project == project:
        return
    theirs = f"project {rs.project!r}" if rs.project is not None else "an unnamed project (no `name:`)"
    ours = f"project {project!r}" if project is not None else "this project, which has no `name:`"
    raise ConfigError(f"a baseline of {theirs}, not of {ours}", file=shown(name),
                      hint=f"remove it (`madengine baseline rm {name}`) and save this project's own "
                           f"(`madengine baseline save {name}`)")


def save(root: Path, name: str, rs: ResultSet) -> bool:
    """Write `rs` as baseline `name`; False when the file already held these bytes. A file there that is
    not a baseline of this project is a ConfigError and is left as it is (`baseline rm` removes it)."""
    path = path_of(root, name)
    if path.exists() or path.is_symlink():
        try:
            load(root, name, rs.project)
        except ConfigError as exc:
            d = exc.diagnostics[0]
            raise ConfigError(d.message, file=d.file, line=d.line, column=d.column,
                              hint=f"nothing written: remove it first (`madengine baseline rm {name}`) if it "
                                   "is to be replaced") from None
    try:
        path.parent.mkdir(exist_ok=True)
    except OSError as exc:
        raise FileSystemError.of(exc, path.parent, doing="write") or exc from None
    return write_atomic(path, rs.to_text().encode("utf-8"))


def remove(root: Path, name: str) -> None:
    path = path_of(root, name)
    if not path.is_file():
        raise missing(root, name) if not path.exists() else UsageError(
            f"{shown(name)} is not a file", hint="remove it by hand if it is not wanted")
    try:
        path.unlink()
    except OSError as exc:
        raise FileSystemError.of(exc, path, doing="write") or exc from None


@dataclass(frozen=True)
class Entry:
    """One line of `baseline list`."""

    name: str
    rs: ResultSet

    def to_json(self) -> dict[str, Any]:
        rs = self.rs
        return {"name": self.name, "file": shown(self.name), "project": rs.project, "apply_id": rs.apply_id,
                "created": rs.created, "lock_hash": rs.lock_hash, "jobs": len(rs.series),
                "figures": rs.figure_count()}


def entries(root: Path, project: str | None) -> list[Entry]:
    """Every baseline beside the madfile, read and checked: the first that is not a baseline of this
    project is a ConfigError naming its file."""
    return [Entry(name, load(root, name, project)) for name in names(root)]


# --- gates ------------------------------------------------------------------------------------------


def for_gates(gates: Mapping[str, Gate], root: Path, project: str | None) -> dict[str, ResultSet]:
    """The baselines the gates' tolerances are against, by name, read once. Read before an apply runs
    anything, so that a missing or foreign baseline stops it with nothing done: a ConfigError at the
    gate (`madfile.yaml:31:7`) for one that does not exist, at the file for one that is not right."""
    wanted: dict[str, str] = {}
    for gate in gates.values():
        if gate.tolerance is not None and gate.baseline:
            wanted.setdefault(gate.baseline, gate.where)
    out: dict[str, ResultSet] = {}
    problems: list[Diagnostic] = []
    for name in sorted(wanted):
        try:
            out[name] = load(root, name, project)
        except UsageError as exc:  # it does not exist: the madfile names it, so the madfile is at fault
            file, line, column = _where(wanted[name])
            d = exc.diagnostics[0]
            problems.append(Diagnostic(file=file, line=line, column=column, message=d.message, hint=d.hint))
        except ConfigError as exc:
            problems.extend(exc.diagnostics)
    if problems:
        raise ConfigError.many(problems)
    return out


def judge_gates(gates: Mapping[str, Gate], latest: Mapping[str, Attempt], history: Callable[[], Iterable[Attempt]],
                baselines: Mapping[str, ResultSet]) -> list[Verdict]:
    """The gates' verdicts on `latest`, tolerances against their baselines or the jobs' previous results
    (from `history`, read only if a gate needs it)."""
    refs: dict[tuple[str, str, str], Reference] = {}
    if any(g.tolerance is not None and not g.baseline for g in gates.values()):
        refs.update(previous_references(gates, latest, history()))
    refs.update(references(gates, baselines))
    return check_gates(gates, latest, refs)


def references(gates: Mapping[str, Gate], baselines: Mapping[str, ResultSet]) -> dict[tuple[str, str, str],
                                                                                       Reference]:
    """(series key, row model, metric) -> the baseline's median, for the gates against a baseline."""
    from madengine.results.resultset import series_key

    out: dict[tuple[str, str, str], Reference] = {}
    for address, gate in gates.items():
        rs = baselines.get(gate.baseline) if gate.tolerance is not None and gate.baseline else None
        series = rs.series.get(series_key(address)) if rs is not None else None
        if series is None:
            continue
        for (row, metric), figure in series.figures.items():
            if metric == gate.metric:
                out[series.key, row, metric] = Reference(figure.median, f"baseline {gate.baseline}")
    return out


def _where(where: str) -> tuple[str | None, int | None, int | None]:
    """`madfile.yaml:31:7` -> its parts."""
    parts = where.rsplit(":", 2)
    if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
        return parts[0], int(parts[1]), int(parts[2])
    return (where or None), None, None
