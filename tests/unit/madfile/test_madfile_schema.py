"""schemas/madfile.schema.json: generated from the models, checked in, and in agreement with the loader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from ruamel.yaml import YAML

from madengine.madfile import schema
from madengine.madfile.load import load_and_check
from tests.unit.madfile.conftest import DESIGN_EXAMPLE

REPO = Path(__file__).resolve().parents[3]
SCHEMA_FILE = REPO / "schemas" / "madfile.schema.json"
EXAMPLES = sorted(REPO.glob("examples/*/madfile.yaml"))


def _validator() -> Any:
    doc = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(doc)
    cls.check_schema(doc)
    return cls(doc)


def _yaml(text: str) -> Any:
    return YAML(typ="safe").load(text)


def test_checked_in_schema_is_up_to_date() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema.render_schema(), \
        "schemas/madfile.schema.json is stale: run `python -m madengine.madfile.schema`"


def test_schema_check_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    assert schema.main(["--check"]) == 0
    stale = tmp_path / "madfile.schema.json"
    stale.write_text("{}\n")
    monkeypatch.setattr(schema, "DEFAULT_PATH", stale)
    assert schema.main(["--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    assert schema.main([]) == 0
    assert stale.read_text(encoding="utf-8") == schema.render_schema()
    assert schema.main(["--bogus"]) == 4


def test_schema_format() -> None:
    text = schema.render_schema()
    doc = schema.generate_schema()
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["title"] == "madfile.yaml"
    assert doc["additionalProperties"] is False
    assert text.endswith("}\n") and not text.endswith("\n\n")
    assert text == json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_design_example_matches_the_schema() -> None:
    _validator().validate(_yaml(DESIGN_EXAMPLE))


def test_schema_rejects_what_the_loader_rejects() -> None:
    validator = _validator()
    for bad in ("version: 2\n",
                "version: 1\nbogus: 1\n",
                "version: 1\ntargets: {t: {backend: sshh}}\n",
                "version: 1\ntargets: {t: {backend: docker, hosts: []}}\n",
                "version: 1\nmodels: [{select: a, scripts: s}]\n",
                "version: 1\nmodels: [{name: m}]\n",
                "version: 1\ncontexts: {c: {gpu_vendor: amd}}\n",
                "version: 1\nruns: [{models: [a], repeat: 0}]\n"):
        assert list(validator.iter_errors(_yaml(bad))), bad


# Every example, or (while there are none) the DESIGN example: never an empty, silently skipped set.
_SAMPLES: list[Path | None] = [*EXAMPLES] or [None]


@pytest.mark.parametrize("path", _SAMPLES, ids=[p.parent.name if p else "design-inline" for p in _SAMPLES])
def test_examples_match_the_schema_and_load(path: Path | None, tmp_path: Path) -> None:
    if path is None:
        path = tmp_path / "madfile.yaml"
        path.write_text(DESIGN_EXAMPLE, encoding="utf-8")
    _validator().validate(_yaml(path.read_text(encoding="utf-8")))
    load_and_check(path)
