"""`madengine state list|show ADDR|forget ADDR`: read and prune the state store (DESIGN §7, §8)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from madengine.cli.options import ChdirOption, FileOption, JsonOption, StateOption, state_db
from madengine.state.location import exists, local_dir, shown

if TYPE_CHECKING:
    from madengine.state.location import StateLocation
    from madengine.state.model import Attempt, ImageRecord, Observed
    from madengine.state.store import StateStore


def register(app: typer.Typer) -> None:
    state_app = typer.Typer(name="state", help="Inspect and prune the state store (.madengine/state.db).",
                            no_args_is_help=True, rich_markup_mode=None)
    state_app.command("list")(list_)
    state_app.command("show")(show)
    state_app.command("forget")(forget)
    app.add_typer(state_app, name="state")


def list_(
    file: Path | None = FileOption,
    chdir: Path | None = ChdirOption,
    state: str | None = StateOption,
    as_json: bool = JsonOption,
) -> None:
    """List recorded addresses: latest status, when, hash, result."""
    import sys

    from madengine.cli import output

    db = state_db(file, chdir, state)
    if not exists(db):  # listing creates nothing
        if as_json:
            output.print_json([])
        else:
            sys.stdout.write(f"0 addresses ({shown(db)} does not exist yet)\n")
        return
    with _open(db, readonly=True) as store:
        observed = store.observed()  # one snapshot: the rows and the serial printed under them agree
    entries, serial = _entries(observed), observed.serial
    if as_json:
        output.print_json(entries)
        return
    rows = [(e["address"], e["status"], e["when"] or "", _short(e["node_hash"]), e["result"]) for e in entries]
    sys.stdout.write(output.columns(("ADDRESS", "STATUS", "WHEN", "HASH", "RESULT"), rows))
    sys.stdout.write(f"{len(entries)} address{'es' if len(entries) != 1 else ''} ({shown(db)}, "
                     f"serial {serial})\n")


def show(
    address: str = typer.Argument(..., metavar="ADDRESS", help="A node address, as `state list` prints it."),
    file: Path | None = FileOption,
    chdir: Path | None = ChdirOption,
    state: str | None = StateOption,
    as_json: bool = JsonOption,
) -> None:
    """Show every attempt of one address, with perf rows and log paths."""
    import sys

    from madengine.cli import output
    from madengine.madfile.locate import display_path

    db = state_db(file, chdir, state)
    with _open_known(db, address, readonly=True) as store:
        attempts = store.attempts(address=address)
        images = store.image_records(address)
    if as_json:
        output.print_json({"address": address, "attempts": [_attempt_json(a) for a in attempts],
                           "images": [_image_json(i) for i in images]})
        return
    out = [address]
    for i in images:
        ident = f"  id {_short(i.image_id)}" if i.image_id else ""
        digest = f"  digest {i.digest}" if i.digest else ""
        out.append(f"  image on {i.target}: {i.status.value}  {i.built_at}  {i.tag}  hash {_short(i.node_hash)}"
                   f"{ident}{digest}")
    for a in attempts:
        took = f"  {_seconds(a.duration)}" if a.duration is not None else ""
        exit_code = f"  exit {a.exit_code}" if a.exit_code is not None else ""
        out.append(f"  #{a.id}  {a.status.value}  {a.started_at}{took}  apply {a.apply_id}"
                   f"  host {a.host or '-'}{exit_code}  hash {_short(a.node_hash)}")
        if a.message:
            out.append(f"      {a.message}")
        if a.facts is not None:  # the facts of the host it ran on, as observed when it started
            out.append(f"      facts {a.host or '-'}: {_facts_summary(a.facts)}")
        if a.log_path:
            out.append(f"      log {display_path(local_dir(db) / a.log_path)}")
        if a.image_digest:
            out.append(f"      image {a.image_digest}")
        out += [f"      perf {p.model}: {_perf(p.performance, p.metric)}"
                + (f" ({p.status.value})" if p.status.value != "SUCCESS" else "") for p in a.perf]
    sys.stdout.write("\n".join(out) + "\n")


def forget(
    address: str = typer.Argument(..., metavar="ADDRESS", help="A node address, as `state list` prints it."),
    file: Path | None = FileOption,
    chdir: Path | None = ChdirOption,
    state: str | None = StateOption,
) -> None:
    """Forget one address: the next plan builds or runs it anew."""
    from madengine.state.lock import WorkspaceLock

    db = state_db(file, chdir, state)
    # The workspace lock keeps this from pulling records from under a running apply.
    with _open_known(db, address) as store, \
            WorkspaceLock.for_store(db).acquire("madengine state forget", kind="forget"):
        attempts, images = store.count_records(address)  # counted, not read: a row that cannot be read goes too
        store.forget(address)
    parts = [_count(attempts, "attempt")] + ([_count(images, "image record")] if images else [])
    typer.echo(f"forgot {address}: {', '.join(parts)} removed")


# --- helpers ---------------------------------------------------------------------------------------


def _open(db: StateLocation, readonly: bool = False) -> StateStore:
    from madengine.state.store import StateStore

    return StateStore.open(db, readonly=readonly)


def _open_known(db: StateLocation, address: str, readonly: bool = False) -> StateStore:
    """The store, if it knows `address`; else a usage error (exit 4) naming close matches."""
    import difflib

    from madengine.errors import UsageError

    known: list[str] = []
    if exists(db):
        store = _open(db, readonly)
        known = store.addresses()
        if address in known:
            return store
        store.close()
    close = difflib.get_close_matches(address, known, n=3, cutoff=0.6)
    hint = (f"did you mean {', '.join(close)}?" if close
            else "`madengine state list` shows the recorded addresses")
    raise UsageError(f"no state recorded for {address}", hint=hint)


def _entries(observed: Observed) -> list[dict[str, Any]]:
    """The `state list` rows: the latest attempt of each address, else its latest image records."""
    latest = observed.latest
    by_address: dict[str, list[ImageRecord]] = {}
    for (address, *_), rec in sorted(observed.images.items()):
        by_address.setdefault(address, []).append(rec)
    entries: list[dict[str, Any]] = []
    for address in sorted(set(latest) | set(by_address)):
        images = by_address.get(address, [])
        attempt = latest.get(address)
        image_result = ", ".join(f"{i.tag} on {i.target}" + (f"/{i.host}" if i.host else "") for i in images)
        if attempt is not None:
            entries.append({"address": address, "status": attempt.status.value,
                            "when": attempt.ended_at or attempt.started_at, "node_hash": attempt.node_hash,
                            "result": _result(attempt) or image_result, "attempt": attempt.id,
                            "targets": [i.target for i in images]})
        else:
            newest = max(images, key=lambda i: i.built_at)
            entries.append({"address": address, "status": newest.status.value, "when": newest.built_at,
                            "node_hash": newest.node_hash, "result": image_result, "attempt": None,
                            "targets": [i.target for i in images]})
    return entries


def _result(a: Attempt) -> str:
    if a.perf:
        first = a.perf[0]
        more = f" (+{len(a.perf) - 1} more)" if len(a.perf) > 1 else ""
        return _perf(first.performance, first.metric) + more
    if a.message:
        return a.message
    if a.exit_code not in (None, 0):
        return f"exit {a.exit_code}"
    return ""


def _facts_summary(facts: dict[str, Any]) -> str:
    from madengine.facts import HostFacts, summary

    try:
        return summary(HostFacts.from_dict(facts)) or "nothing known"
    except ValueError as e:  # recorded by a madengine that wrote them otherwise
        return f"unreadable ({e})"


def _attempt_json(a: Attempt) -> dict[str, Any]:
    return {"id": a.id, "apply_id": a.apply_id, "address": a.address, "node_hash": a.node_hash,
            "status": a.status.value, "started_at": a.started_at, "ended_at": a.ended_at,
            "duration": a.duration, "host": a.host, "exit_code": a.exit_code, "log_path": a.log_path,
            "image_digest": a.image_digest, "handle": a.handle, "message": a.message, "inputs": a.inputs,
            "facts": a.facts,
            "perf": [{"model": p.model, "performance": p.performance, "metric": p.metric, "status": p.status.value}
                     for p in a.perf]}


def _image_json(i: ImageRecord) -> dict[str, Any]:
    return {"address": i.address, "target": i.target, "node_hash": i.node_hash, "tag": i.tag,
            "image_id": i.image_id, "digest": i.digest, "built_at": i.built_at, "status": i.status.value,
            **({"host": i.host} if i.host else {}),
            "inputs": i.inputs}


def _short(node_hash: str | None) -> str:
    """A hash as people read it: the first 12 hex digits, without the algorithm."""
    if not node_hash:
        return ""
    return node_hash.split(":", 1)[-1][:12]


def _perf(value: float | None, metric: str) -> str:
    if value is None:
        return f"- {metric}".rstrip()
    number = str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.6g}"
    return f"{number} {metric}".rstrip()


def _seconds(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else (
        f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"
