"""The backend registry refuses two backends of one name, naming both places, rather than keeping the first.

Plugins are metadata-only distributions on `sys.path` (as `tests/fixtures/plugins/` is): the registry
reads entry-point names and targets only, never imports them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from madengine.backends.registry import available, backend_class, installed
from madengine.errors import ConfigError

FUTURE = Path(__file__).resolve().parents[2] / "fixtures" / "plugins" / "madengine_future_backends-0.0.dist-info"


def plugin(root: Path, dist: str, **backends: str) -> Path:
    """A metadata-only distribution `dist` registering `backends` (name -> "module:Class") under `root`."""
    info = root / f"{dist}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "".join(f"{name} = {where}\n" for name, where in backends.items())
    (info / "entry_points.txt").write_text(f"[madengine.backends]\n{lines}")
    return info


def test_two_plugins_of_one_backend_name_are_refused_naming_both(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(FUTURE, tmp_path / FUTURE.name)
    plugin(tmp_path, "fleet_tools", pbs="fleet_tools.pbs:FleetPbs")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as info:
        available()
    (d,) = info.value.diagnostics
    assert d.message.startswith("two backends are named 'pbs': ")
    assert "madengine_future_backends:PbsBackend (distribution madengine-future-backends 0.0 at " in d.message
    assert "fleet_tools.pbs:FleetPbs (distribution fleet_tools 1.0 at " in d.message
    assert "uninstall one" in d.hint
    with pytest.raises(ConfigError, match="two backends are named 'pbs'"):
        installed(["pbs"])  # what validating a madfile with a pbs target asks


def test_a_plugin_reusing_a_built_in_name_with_another_class_is_refused(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    plugin(tmp_path, "shadow", docker="shadow:Docker", pbs="shadow:Pbs")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as info:
        backend_class("pbs")  # a plugin's backend is looked up through every entry point
    (d,) = info.value.diagnostics
    assert d.message.startswith("two backends are named 'docker': madengine.backends.docker:DockerBackend "
                                "(built into madengine) and shadow:Docker (distribution shadow 1.0 at ")


def test_the_same_class_registered_twice_is_one_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(FUTURE, tmp_path / "a" / FUTURE.name)
    shutil.copytree(FUTURE, tmp_path / "b" / FUTURE.name)  # one package found on two paths
    plugin(tmp_path / "c", "mirror", local="madengine.backends.local:LocalBackend")  # madengine's own, again
    for path in ("a", "b", "c"):
        monkeypatch.syspath_prepend(str(tmp_path / path))
    found = available()
    assert found["pbs"] == "madengine_future_backends:PbsBackend"
    assert found["ssh"] == "madengine.backends.ssh:SshBackend"  # built in
    assert found["local"] == "madengine.backends.local:LocalBackend"
