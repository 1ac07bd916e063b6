"""database create-table|update-table: where the database is, and what is added (pure parts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from madengine.compat import rocm_database as rdb
from madengine.compat.rocm_csv import parse_csv
from madengine.errors import ConfigError, UsageError
from madengine.state.location import redact


def test_redact_hides_passwords_only() -> None:
    assert redact("postgresql://ci:hunter2@db:5432/perf") == "postgresql://ci:***@db:5432/perf"
    assert redact("postgresql://ci@db/perf?password=hunter2&sslmode=require") == \
        "postgresql://ci@db/perf?password=***&sslmode=require"
    assert redact("postgresql://db/perf") == "postgresql://db/perf"


def test_urls() -> None:
    assert rdb.parse_sql_url("postgres://db/x").kind == "postgresql"
    assert rdb.parse_sql_url("sqlite:///perf.db").path == Path("perf.db")
    assert rdb.parse_sql_url("sqlite:////tmp/perf.db").path == Path("/tmp/perf.db")
    assert rdb.parse_sql_url("results/perf.db").path == Path("results/perf.db")
    with pytest.raises(UsageError, match=r"mysql:// is not an SQL database madengine speaks"):
        rdb.parse_sql_url("mysql://root:pw@db/dlm_db")


def test_tuna_variables_as_rocm_s_but_postgresql() -> None:
    assert rdb.tuna_target({}) is None  # nothing set: the SQLite file
    target = rdb.tuna_target({"TUNA_DB_HOSTNAME": "db", "TUNA_DB_USER_NAME": "ci@lab", "TUNA_DB_USER_PASSWORD": "pw"})
    assert target is not None and target.url == "postgresql://ci%40lab@db:5432/dlm_db" and target.password == "pw"
    assert "pw" not in target.shown()
    with pytest.raises(UsageError, match="TUNA_DB_PORT='x' is not a port number"):
        rdb.tuna_target({"TUNA_DB_PORT": "x"})
    assert rdb.tuna_target({"TUNA_DB_NAME": "n", "TUNA_SSH_HOSTNAME": "localhost"}) is not None


def records(text: str) -> list[rdb.PerfRecord]:
    return rdb.perf_records(parse_csv(text, "perf.csv"))[0]


def test_new_records_count_equal_rows() -> None:
    rows = records("model,performance,relative_change\na,1,\na,1,+5%\nb,2,\n")
    stored = [rows[0].same_row()]  # one `a,1` is there: relative_change is not part of a row's identity
    assert [r.line for r in rdb.new_records(rows, stored)] == [3, 4]
    assert rdb.new_records(rows, [r.same_row() for r in rows]) == []


def test_values_longer_than_rocm_s_columns_are_refused_at_their_line() -> None:
    with pytest.raises(ConfigError) as caught:
        records("model,args,tags\na," + "x" * 129 + "," + "t" * 65535 + "\n")
    assert [d.render() for d in caught.value.diagnostics] == [
        "perf.csv:2: error: args: 129 characters, more than the 128 of dlm_table's column "
        "(hint: ROCm's table has these column sizes; shorten the value)"]


def test_columns_not_stored_are_named() -> None:
    rows, not_stored = rdb.perf_records(parse_csv(" model ,extra,id\n a ,1,7\n", "perf.csv"))
    assert not_stored == ["extra", "id"] and rows[0].values["model"] == "a"


def history(*rows: tuple[str, str, str, str | None]) -> rdb.Baselines:
    values = [{"model": "m", "gpu_architecture": arch, "status": status, "base_docker": "ubuntu", "performance": p}
              for arch, status, _, p in rows]
    return rdb.baselines([tuple(v.get(c) for c in rdb.SAME_ROW) for v in values])


def test_relative_change_per_architecture_of_the_table() -> None:
    [row] = records("model,base_docker,gpu_architecture,performance,relative_change\nm,ubuntu,gfx942,120,\n")
    past = history(*[("gfx942", "SUCCESS", "", str(v)) for v in (10, 100, 100, 100, 100, 100)],
                   ("gfx942", "FAILURE", "", "1"), ("gfx90a", "SUCCESS", "", "60"))
    assert rdb.relative_change(row, ["gfx90a", "gfx942", "gfx1100"], past) == str({
        "gfx90a": {"pct_change": 200.0, "baseline_avg": 60.0, "sample_count": 1},
        "gfx942": {"pct_change": 120.0, "baseline_avg": 100.0, "sample_count": 5},  # the last 5 successes
        "gfx1100": {"pct_change": None, "baseline_avg": None, "sample_count": None}})
    [merged] = records("model,base_docker,performance,relative_change\nm,ubuntu,60,\"{'x': 1}\"\n")
    assert rdb.relative_change(merged, ["gfx90a"], past) == str(
        {"x": 1, "gfx90a": {"pct_change": 100.0, "baseline_avg": 60.0, "sample_count": 1}})
