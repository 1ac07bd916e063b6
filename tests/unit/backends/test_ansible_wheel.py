"""The top-level templates/ ship inside the wheel, and an installed madengine renders from them (ansible's files,
the HTML report's)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import REPO_ROOT


def test_the_wheel_holds_the_templates_and_renders_from_them(tmp_path: Path) -> None:
    isolation = [] if importlib.util.find_spec("hatchling") is None else ["--no-build-isolation"]
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-w", str(tmp_path / "dist"),
                           str(REPO_ROOT)], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    wheel = next((tmp_path / "dist").glob("madengine-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"madengine/_templates/ansible/{n}" for n in ("inventory.yml.j2", "playbook.yml.j2", "ansible.cfg.j2",
                                                              "stop.yml.j2")}
    shipped |= {f"madengine/_templates/report/{n}" for n in ("report.html.j2", "report.css")}
    assert shipped <= names, sorted(n for n in names if "templates" in n)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    # The installed package alone (not this checkout): it finds its templates and renders with them.
    code = ("from madengine.backends import ansible_render as r; print(r.template_dir()); "
            "print(r.render_inventory([r.InventoryHost('h', '10.0.0.1')]), end='')")
    env = {**os.environ, "PYTHONPATH": str(site)}
    shown = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=60, check=False)
    assert shown.returncode == 0, shown.stderr
    where, _, inventory = shown.stdout.partition("\n")
    assert Path(where) == site / "madengine" / "_templates" / "ansible"
    assert '"h": !unsafe {"ansible_host": "10.0.0.1"' in inventory
    code = ("from madengine.results import report as r; print(r.template_dir()); "
            "print(r.render(r.build(project='p', generated='now', applies=[], attempts=[])), end='')")
    shown = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=60, check=False)
    assert shown.returncode == 0, shown.stderr
    where, _, page = shown.stdout.partition("\n")
    assert Path(where) == site / "madengine" / "_templates" / "report"
    assert "<h1>madengine report: p</h1>" in page and "No results yet" in page
