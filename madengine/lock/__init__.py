"""Canonical hashing and the lockfile (DESIGN §4)."""

LOCK_NAME = "madengine.lock"
