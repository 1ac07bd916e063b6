"""What `madengine results` shows: selection of attempts, the table's rows and the JSON form. Pure."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from operator import attrgetter
from typing import Any

from madengine.results.gates import Verdict
from madengine.results.gates import summary as gates_summary
from madengine.results.perfcsv import format_number, is_job, relative_changes
from madengine.state.model import Attempt

HEADER = ("JOB", "STATUS", "PERFORMANCE", "METRIC", "CHANGE", "FINISHED", "DURATION", "NOTE")
HISTORY_HEADER = ("APPLY", *HEADER)
GATE = "GATE"  # shown before NOTE when an attempt shown has a recorded `expect:` verdict
_MAX_NOTE = 80


def select(attempts: Iterable[Attempt], *, history: str | None = None, apply_id: int | None = None) -> list[Attempt]:
    """The job attempts to show, oldest first.

    By default the latest attempt of every job (within apply `apply_id` if given); with `history`,
    every attempt of that model (or of that multiple_results row name).
    """
    jobs = sorted((a for a in attempts if is_job(a)), key=attrgetter("chronology"))
    if apply_id is not None:
        jobs = [a for a in jobs if a.apply_id == apply_id]
    if history is not None:
        # As the store's `attempts(model=...)`: the job's model, or a multiple_results row's name.
        return [a for a in jobs if a.inputs.get("model") == history or any(r.model == history for r in a.perf)]
    latest: dict[str, Attempt] = {}
    for attempt in jobs:
        latest[attempt.address] = attempt
    return sorted(latest.values(), key=lambda a: a.address)


def models_with_results(attempts: Iterable[Attempt]) -> list[str]:
    return sorted({str(a.inputs["model"]) for a in attempts if is_job(a) and a.inputs.get("model")})


def _duration(attempt: Attempt) -> str:
    seconds = attempt.duration
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def has_gates(selected: Iterable[Attempt]) -> bool:
    return any(a.gate is not None for a in selected)


def header(selected: Sequence[Attempt], *, history: bool = False) -> tuple[str, ...]:
    """The table's columns: GATE only when a shown attempt has a gate."""
    base = HISTORY_HEADER if history else HEADER
    return (*base[:-1], GATE, base[-1]) if has_gates(selected) else base


def _verdict(attempt: Attempt) -> Verdict | None:
    return Verdict.from_json(attempt.address, attempt.gate) if attempt.gate is not None else None


def _gate_cell(attempt: Attempt) -> str:
    verdict = _verdict(attempt)
    return "" if verdict is None else "met" if verdict.met else "UNMET"


def _note(attempt: Attempt) -> str:
    verdict = _verdict(attempt)
    # An unmet gate says why when nothing else does (a failed run's own message comes first).
    note = " ".join((attempt.message or (verdict.reason if verdict and not verdict.met else "")).split())
    return note if len(note) <= _MAX_NOTE else note[:_MAX_NOTE - 3] + "..."


def table_rows(selected: Sequence[Attempt], history: Iterable[Attempt], *,
               with_apply: bool = False) -> list[tuple[str, ...]]:
    """One line per attempt; an attempt with several figures (multiple_results) gets a line per figure."""
    changes = relative_changes(selected, history)
    gates = has_gates(selected)
    rows: list[tuple[str, ...]] = []
    for attempt in selected:
        lead = (str(attempt.apply_id),) if with_apply else ()
        when = attempt.ended_at or attempt.started_at
        model = attempt.inputs.get("model")
        single = len(attempt.perf) == 1 and attempt.perf[0].model == model
        gate = (_gate_cell(attempt),) if gates else ()
        if single or not attempt.perf:
            perf = attempt.perf[0] if attempt.perf else None
            rows.append((*lead, attempt.address, attempt.status.value,
                         format_number(perf.performance) if perf else "", perf.metric if perf else "",
                         changes.get((attempt.id, 0), ""), when, _duration(attempt), *gate, _note(attempt)))
            continue
        rows.append((*lead, attempt.address, attempt.status.value, "", "", "", when, _duration(attempt), *gate,
                     _note(attempt)))
        for i, row in enumerate(attempt.perf):
            rows.append((*(("",) if with_apply else ()), "  " + row.model, row.status.value,
                         format_number(row.performance), row.metric, changes.get((attempt.id, i), ""), "", "",
                         *(("",) if gates else ()), ""))
    return rows


def summary(selected: Sequence[Attempt], *, history: str | None = None) -> str:
    counts = Counter(a.status.value for a in selected)
    parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    verdicts = [v for v in map(_verdict, selected) if v is not None]
    if verdicts:
        parts += f"; {gates_summary(verdicts)}"
    if history is not None:
        noun = "attempt" if len(selected) == 1 else "attempts"
        return f"{len(selected)} {noun} of {history}: {parts}"
    noun = "job" if len(selected) == 1 else "jobs"
    return f"{len(selected)} {noun}: {parts}"


def to_json(selected: Sequence[Attempt], history: Iterable[Attempt]) -> list[dict[str, Any]]:
    changes = relative_changes(selected, history)
    return [{
        "address": a.address,
        "model": a.inputs.get("model"),
        "apply_id": a.apply_id,
        "attempt_id": a.id,
        "status": a.status.value,
        "started_at": a.started_at,
        "ended_at": a.ended_at,
        "duration": a.duration,
        "host": a.host,
        "exit_code": a.exit_code,
        "log_path": a.log_path,
        "message": a.message,
        "gate": a.gate,  # the `expect:` verdict recorded with this result (met, value, reason, bounds), or null
        "facts": a.facts,  # the facts of the host it ran on (`madengine.facts.HostFacts`), or null
        "perf": [{"model": r.model, "performance": r.performance, "metric": r.metric, "status": r.status.value,
                  "relative_change": changes.get((a.id, i), "")} for i, r in enumerate(a.perf)],
    } for a in selected]
