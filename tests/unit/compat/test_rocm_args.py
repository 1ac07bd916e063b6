"""ROCm madengine's command line -> a madfile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from madengine.compat.rocm import RocmArgs, batch_models, context_of, detect_gpu_vendor, madfile_text, parse_context
from madengine.errors import UsageError


def test_context_fields_and_free_keys() -> None:
    ctx = context_of({"gpu_vendor": "AMD", "docker_env_vars": {"A": "1"}, "ctx_test": "1",
                      "pre_scripts": [{"path": "scripts/common/pre.sh", "args": "-x"}]})
    assert ctx == {"gpu_vendor": "AMD", "guest_os": "UBUNTU", "docker_env_vars": {"A": "1"},
                   "pre_scripts": [{"path": "scripts/common/pre.sh", "args": "-x"}], "match": {"ctx_test": "1"}}


def test_gpu_vendor_is_detected_when_absent(tmp_path: Path) -> None:
    assert detect_gpu_vendor(tmp_path) in ("NONE", "NVIDIA")
    (tmp_path / "kfd").touch()
    assert detect_gpu_vendor(tmp_path) == "AMD"


def test_file_then_inline_json_or_python_dict(tmp_path: Path) -> None:
    f = tmp_path / "ctx.json"
    f.write_text('{"gpu_vendor": "NVIDIA", "guest_os": "CENTOS"}')
    assert parse_context("{'gpu_vendor': 'AMD'}", f) == {"gpu_vendor": "AMD", "guest_os": "CENTOS"}
    with pytest.raises(UsageError, match="neither JSON nor a Python dict"):
        parse_context("{nope", None)
    with pytest.raises(UsageError, match="must be an object"):
        parse_context("[1]", None)


def test_madfile_text_is_a_valid_madfile() -> None:
    text = madfile_text(RocmArgs(tags=["dummy", "dummy2:batch_size=4"], additional_context={"gpu_vendor": "NONE"},
                                 registry="localhost:5000", gpus=8))
    data = json.loads(text)
    assert data["models"] == [{"select": ["dummy", "dummy2:batch_size=4"]}]
    assert data["targets"] == {"docker": {"backend": "docker", "gpus": 8}}
    assert data["registry"] == "localhost:5000" and data["package"] == "."
    with pytest.raises(UsageError, match="no --tags"):
        madfile_text(RocmArgs(tags=[]))


def test_batch_manifest(tmp_path: Path) -> None:
    f = tmp_path / "batch.json"
    f.write_text(json.dumps([{"model_name": "a", "build_new": True}, {"model_name": "b", "build_new": False},
                             {"model_name": "c"}]))
    assert batch_models(f) == ["a", "c"]


def test_docker_gpus_is_refused_not_ignored() -> None:
    with pytest.raises(UsageError, match="'docker_gpus' is not supported"):
        context_of({"gpu_vendor": "AMD", "docker_gpus": "0,1"})
