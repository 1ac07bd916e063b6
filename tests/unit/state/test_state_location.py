"""Where the store is (a path or a postgresql:// URL) and how a URL is shown: never with its password."""

from __future__ import annotations

from pathlib import Path

import pytest

from madengine.errors import UsageError
from madengine.state.location import PgLocation, locate_store, redact, scrub, state_location, url_password

URL = "postgresql://ci@db:5432/bench"


def test_precedence_command_line_then_url_variable_then_path_variable_then_madfile(tmp_path: Path) -> None:
    root = tmp_path / "p"
    both = {"MADENGINE_STATE_URL": URL, "MADENGINE_STATE": "env.db"}
    assert state_location(root, "cli.db", both) == root / "cli.db"
    assert state_location(root, None, both) == PgLocation(URL, root / ".madengine")
    assert state_location(root, None, {"MADENGINE_STATE": "env.db"}, configured=URL) == root / "env.db"
    assert state_location(root, None, {}, configured=URL) == PgLocation(URL, root / ".madengine")
    assert state_location(root, None, {}, configured="s/x.db") == root / "s" / "x.db"
    assert state_location(root, None, {}) == root / ".madengine" / "state.db"
    assert state_location(root, "postgres://h/db", {}) == PgLocation("postgres://h/db", root / ".madengine")
    with pytest.raises(UsageError, match=r"'sqlite://u:\*\*\*@h/x' is a sqlite:// URL"):
        state_location(root, "sqlite://u:pw@h/x", {})


def test_the_madfile_is_read_only_when_nothing_else_chose(tmp_path: Path) -> None:
    (tmp_path / "madfile.yaml").write_text("version: 1\nmodels: []\nstate: ${env:DB}\n")
    madfile = tmp_path / "madfile.yaml"
    assert locate_store(madfile, None, {"DB": URL}) == PgLocation(URL, tmp_path / ".madengine")
    assert locate_store(madfile, "x.db", {}) == tmp_path / "x.db"  # not read: the unset DB is no error
    (tmp_path / "madfile.yaml").write_text("version: 1\nmodels: []\n")
    assert locate_store(madfile, None, {}) == tmp_path / ".madengine" / "state.db"
    assert locate_store(tmp_path / "none.yaml", None, {}) == tmp_path / ".madengine" / "state.db"


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://ci:s3cret@db:5432/bench", "postgresql://ci:***@db:5432/bench"),
    ("postgresql://ci@db/bench?password=s3cret&sslmode=require", "postgresql://ci@db/bench?password=***&sslmode=require"),
    ("postgresql://ci:p%40ss@db/bench", "postgresql://ci:***@db/bench"),
    ("postgresql://ci:a@b@db/bench", "postgresql://ci:***@db/bench"),
    ("postgresql://db/bench", "postgresql://db/bench"),
])
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown
    location = PgLocation(url, Path("."))
    assert (str(location), location.display) == (shown, shown) and "s3cret" not in repr(location)


def test_scrub_removes_the_password_in_every_spelling() -> None:
    url = "postgresql://ci:p%40ss@db/bench"
    assert url_password(url) == "p%40ss"
    text = f"failed for {url}: password p@ss and p%40ss refused"
    assert scrub(text, url) == "failed for postgresql://ci:***@db/bench: password *** and *** refused"


def test_a_database_location_reads_as_a_store_file_does(tmp_path: Path) -> None:
    from madengine.state.location import exists, local_dir

    location = PgLocation(URL, tmp_path / ".madengine")
    assert (location.exists(), exists(location), location.parent, local_dir(location)) == (
        True, True, tmp_path / ".madengine", tmp_path / ".madengine")
    path = tmp_path / ".madengine" / "state.db"
    assert (exists(path), local_dir(path)) == (False, tmp_path / ".madengine")
