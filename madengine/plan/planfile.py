"""Saved plans (`madengine plan -o plan.json`), checked for staleness before they are applied.

A plan file holds addresses, actions, reasons and hashes: never a secret, never an env value.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from madengine import shape
from madengine.errors import ConfigError, Diagnostic, MadengineError, UsageError
from madengine.files import decode_utf8, write_atomic
from madengine.lock.entries import NodeKind
from madengine.plan.model import Action, Change, Plan
from madengine.shape import ListOf, MapOf, OneOf

FORMAT = "madengine-plan"
VERSION = 1


class StalePlanError(MadengineError):
    """The world moved since the plan was saved (exit 1)."""


def to_json(plan: Plan, madfile: str) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "madfile": madfile, "lock_hash": plan.lock_hash,
            "serial": plan.serial, "options": plan.options, "summary": plan.summary(),
            "changes": [c.to_json() for c in plan.changes]}


def save(path: Path, plan: Plan, madfile: str) -> None:
    write_atomic(path, (json.dumps(to_json(plan, madfile), indent=2, sort_keys=True) + "\n").encode("utf-8"))


def load(path: Path) -> tuple[Plan, str]:
    """The plan and the madfile it was made for; a file that is not a saved plan is a config error."""
    hint = "save the plan again with `madengine plan -o FILE`"
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"no plan file {path}", hint="save one with `madengine plan -o FILE`") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory, not a plan file", hint=hint) from None
    try:
        data = json.loads(decode_utf8(text, str(path), what=f"{path} is not a plan file: not UTF-8 text", hint=hint))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not a plan file: {exc.msg}", file=str(path), line=exc.lineno,
                          column=exc.colno, hint=hint) from None
    except RecursionError:
        raise ConfigError(f"{path} is not a plan file: nested too deeply", file=str(path), hint=hint) from None
    except ValueError:  # a number of thousands of digits, which Python refuses to convert
        raise ConfigError(f"{path} is not a plan file: it holds a number too long to read", file=str(path),
                          hint=hint) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
        raise ConfigError(f"{path} is not a madengine plan (version {VERSION})", file=str(path), hint=hint)
    found = shape.problems(data, _SHAPE)
    if found:
        raise ConfigError.many(Diagnostic(file=str(path), line=None, column=None, key_path=key,
                                          message=f"{message} (not a plan madengine saved)", hint=hint)
                               for key, message in found)
    plan = Plan(lock_hash=data["lock_hash"], serial=data["serial"],
                changes=tuple(Change.from_json(c) for c in data["changes"]), options=data.get("options", {}))
    return plan, data.get("madfile", "madfile.yaml")


_SHAPE = {
    "madfile?": str,
    "lock_hash": str,
    "serial": int,
    "options?": MapOf(object),
    "changes": ListOf({"address": str, "kind": OneOf(*(k.value for k in NodeKind)),
                       "action": OneOf(*(a.value for a in Action)), "reason": str, "hash": str,
                       "targets": ListOf(str), "depends_on?": ListOf(str), "hosts?": ListOf(str)}),
}


def check_current(plan: Plan, lock_hash: str, serial: int) -> None:
    """Refuse a saved plan made against another lock or another state (Terraform's stale plan)."""
    if plan.lock_hash != lock_hash:
        raise StalePlanError("the saved plan is stale: the lock changed since it was made",
                             hint="run `madengine plan -o FILE` again")
    if plan.serial != serial:
        raise StalePlanError(f"the saved plan is stale: the state moved (serial {plan.serial} -> {serial})",
                             hint="run `madengine plan -o FILE` again")
