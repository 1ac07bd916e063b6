"""files.write_atomic: the one atomic writer of the lock, baselines, plans, reports, exports and perf.csv."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from madengine import files


def test_two_writers_at_once_both_succeed_and_one_of_them_wins(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Writer A is between its temporary file and its rename when writer B writes the same path (two
    `baseline save` runs): with one fixed temporary name B took A's file away and A failed."""
    target = tmp_path / "main.json"
    real_replace = os.replace
    interleaved: list[bool] = []

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if not interleaved:
            interleaved.append(True)
            assert files.write_atomic(target, b"B\n")  # B runs to the end while A waits here
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    assert files.write_atomic(target, b"A\n")
    assert interleaved and target.read_bytes() == b"A\n"  # the last rename wins, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["main.json"]
    assert target.stat().st_mode & 0o777 == 0o644


def test_threads_writing_one_path_all_succeed(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    contents = [f"{n}\n".encode() * (1000 + n) for n in range(2)]
    errors: list[BaseException] = []

    def write(data: bytes) -> None:
        try:
            for _ in range(50):
                files.write_atomic(target, data)
                target.unlink(missing_ok=True)  # each write a real one, not skipped as unchanged
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(c,)) for c in contents]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    files.write_atomic(target, contents[0])
    assert target.read_bytes() in contents
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    (tmp_path / "report.html").mkdir()  # rename over a directory fails after the temporary file is written
    with pytest.raises(IsADirectoryError):
        files.write_atomic(tmp_path / "report.html", b"<html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_an_interrupted_write_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(src: object, dst: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        files.write_atomic(tmp_path / "madfile.lock", b"x")
    assert list(tmp_path.iterdir()) == []


def test_the_same_bytes_are_not_written_again(tmp_path: Path) -> None:
    target = tmp_path / "madfile.lock"
    assert files.write_atomic(target, b"same")
    before = target.stat().st_ino
    assert not files.write_atomic(target, b"same")
    assert target.stat().st_ino == before
