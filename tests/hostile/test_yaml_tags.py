"""Tags outside plain YAML in a madfile, and bytes that are not JSON text in models.json: a config error
at the position, never a value silently dropped or constructed, never an internal error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import RunCli

CONFIG = 5


@pytest.mark.parametrize("value", [
    "!!python/name:os.system",  # was silently read as the name ''
    "!!python/object/apply:os.system ['true']",
    "!!python/object:builtins.dict {}",
    "!!binary aGVsbG8=",
    "!!set {a, b}",  # an internal error
    "!!omap [a: 1]",  # an internal error
])
def test_a_tag_outside_plain_yaml_is_a_config_error_at_its_position(
        tmp_path: Path, run_cli: RunCli, value: str) -> None:
    (tmp_path / "madfile.yaml").write_text(f"version: 1\nname: {value}\n")
    code, out, err = run_cli("validate", cwd=tmp_path)
    assert code == CONFIG, out + err
    tag = value.split()[0]
    assert f"madfile.yaml:2:7: error: name: unsupported YAML tag `{tag}`" in err
    assert "internal error" not in err


def test_every_bad_tag_is_reported_at_once_and_plain_tags_are_fine(tmp_path: Path, run_cli: RunCli) -> None:
    (tmp_path / "madfile.yaml").write_text(
        "version: !!int 1\nname: !!str x\nregistry: !!python/name:os.system\npackage: !!python/none ''\n")
    code, _, err = run_cli("validate", cwd=tmp_path)
    assert code == CONFIG
    assert "madfile.yaml:3:11:" in err and "madfile.yaml:4:10:" in err


@pytest.mark.parametrize("value", ["2024-13-45", "2024-01-01", "2024-1-1 10:00:00"])
def test_a_date_looking_value_is_the_string_written(tmp_path: Path, run_cli: RunCli, value: str) -> None:
    (tmp_path / "madfile.yaml").write_text(f"version: 1\nname: {value}\n")  # 2024-13-45 was an internal error
    code, out, err = run_cli("validate", "--json", cwd=tmp_path)
    assert (code, json.loads(out)["name"]) == (0, value), out + err


def test_a_date_where_a_number_is_expected_is_named_as_the_string(tmp_path: Path, run_cli: RunCli) -> None:
    (tmp_path / "madfile.yaml").write_text("version: 2024-01-01\n")
    code, _, err = run_cli("validate", cwd=tmp_path)
    assert code == CONFIG
    assert err.startswith("madfile.yaml:1:10: error: version: must be the number 1, found the string '2024-01-01'")
    (tmp_path / "madfile.yaml").write_text("version: 1\nname: !!timestamp 2024-01-01\n")  # no date is constructed
    code, _, err = run_cli("validate", cwd=tmp_path)
    assert code == CONFIG and err.startswith("madfile.yaml:2:7: error: name: unsupported YAML tag `!!timestamp`")


@pytest.mark.parametrize(("content", "where"), [
    (b"\xff\xfe[\x00]\x00", "models.json:1:1: error: not UTF-8 text: byte 0xff"),  # UTF-16
    (b'[{"name": "caf\xe9"}]', "models.json:1:15: error: not UTF-8 text: byte 0xe9"),  # Latin-1
    (b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)), "models.json:2:118: error: not UTF-8 text: byte 0x80"),
])
def test_models_json_that_is_not_utf8_json_text_is_a_config_error_with_its_position(
        tmp_path: Path, run_cli: RunCli, content: bytes, where: str) -> None:
    (tmp_path / "models.json").write_bytes(content)
    code, out, err = run_cli("discover", cwd=tmp_path)
    assert code == CONFIG, out + err
    assert where in err


def test_a_bom_before_models_json_is_not_an_error(tmp_path: Path, run_cli: RunCli) -> None:
    (tmp_path / "models.json").write_bytes(
        b'\xef\xbb\xbf[{"name": "m", "dockerfile": "d", "scripts": "s", "tags": ["t"]}]')
    code, out, err = run_cli("discover", "--json", cwd=tmp_path)
    assert code == 0, err
    assert '"name": "m"' in out
