"""Hostile values in what the ansible backend renders: a model's args and params, a context's env values, a
results CSV name, a host's key path. Each lands in the playbook as data, exactly (never templated by ansible,
never parsed by a shell, never able to add a key, a task or a play), or is refused with a position."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import RunCli

HOSTILE = ["{{ lookup('pipe', 'touch /tmp/madengine-pwned') }}", "$(touch /tmp/madengine-pwned)", "`id`",
           "$HOME", "~", "a\"b'c", "x\n- name: injected", "tab\there", "}} {% raw %}", "\u2028\x85\x7f!unsafe",
           "key: value", "# comment", "; rm -rf /", "--", "é漢字😀", "yes", "010", "1e3", "null", "2001-01-01"]


class _Loader(yaml.SafeLoader):  # type: ignore[misc]
    """YAML as ansible reads it: `!unsafe` marks a string ansible never templates."""


class Unsafe(str):
    pass


class UnsafeList(list[Any]):
    pass


class UnsafeDict(dict[str, Any]):
    pass


def _unsafe(loader: _Loader, node: yaml.Node) -> Any:
    """As ansible: the value is never a template (lists and mappings: nor anything in them)."""
    if isinstance(node, yaml.SequenceNode):
        return UnsafeList(loader.construct_sequence(node, deep=True))
    if isinstance(node, yaml.MappingNode):
        return UnsafeDict(loader.construct_mapping(node, deep=True))
    return Unsafe(loader.construct_scalar(node))


_Loader.add_constructor("!unsafe", _unsafe)


def flow(value: Any) -> str:
    """`value` as one line of YAML for the madfile, every string double-quoted (control characters escaped)."""
    text = yaml.safe_dump(value, default_style='"', default_flow_style=True, allow_unicode=True, width=10**6)
    return str(text).removesuffix("\n...\n").strip()


def generate(run_cli: RunCli, tmp_path: Path, model: str, context: str = "{}",
             target: str = "") -> list[dict[str, Any]]:
    root = tmp_path / "proj"
    (root / "scripts" / "m").mkdir(parents=True)
    (root / "scripts" / "m" / "run.sh").write_text("echo hi\n")
    (root / "docker").mkdir()
    (root / "docker" / "m.ubuntu.none.Dockerfile").write_text("FROM busybox\n")
    (root / "madfile.yaml").write_text(textwrap.dedent(f"""\
        version: 1
        models:
          - {{name: m, dockerfile: docker/m, scripts: scripts/m/run.sh, n_gpus: 0, {model}}}
        contexts:
          cpu: {context}
        targets:
          lab: {{backend: ansible, hosts: [{{address: 10.0.0.5{target}}}]}}
        """))
    code, _out, err = run_cli("generate", "ansible", "-o", "out", cwd=root)
    assert code == 0 and "Traceback" not in err, err
    plays = yaml.load((root / "out" / "lab" / "playbook.yml").read_text(), Loader=_Loader)
    return list(plays)


def run_task(play: dict[str, Any]) -> dict[str, Any]:
    (task,) = [t for t in play["tasks"] if t["name"] == "run"]
    return dict(task)


def command(play: dict[str, Any]) -> list[str]:
    """The run task's command: a constant template joining the driver to the job's words, an !unsafe list."""
    task = run_task(play)
    assert task["ansible.builtin.command"]["argv"] == ("{{ ['setsid', '-w', 'sh', '-c', madengine_driver, "
                                                       "'madengine-run'] + madengine_args }}")
    assert task["ansible.builtin.command"]["expand_argument_vars"] is False
    assert isinstance(play["vars"], UnsafeDict)  # so is all it holds
    words = play["vars"]["madengine_args"]
    assert all(type(w) is str for w in words)
    return list(words)


def test_params_are_words_of_the_command_exactly(run_cli: RunCli, tmp_path: Path) -> None:
    plays = generate(run_cli, tmp_path, f"params: {{p: {flow(HOSTILE)}}}")
    assert len(plays) == len(HOSTILE)  # one play per job: nothing added one
    seen = []
    for play in plays:
        assert set(play) == {"name", "hosts", "gather_facts", "vars", "tasks"}
        assert [t["name"] for t in play["tasks"]] == ["copy the run directory", "run", "fetch the log"]
        argv = command(play)
        assert argv[-3:-1] == ["run.sh", "--p"]
        assert isinstance(play["name"], Unsafe) and isinstance(play["vars"], UnsafeDict)
        seen.append(argv[-1])
    assert sorted(seen) == sorted(HOSTILE)


def test_env_values_are_data_exactly(run_cli: RunCli, tmp_path: Path) -> None:
    env = {f"V{i}": v for i, v in enumerate(HOSTILE)}
    plays = generate(run_cli, tmp_path, "args: ''",
                     context="{docker_env_vars: " + flow(env) + "}")
    (play,) = plays
    environment = run_task(play)["environment"]
    assert isinstance(environment, UnsafeDict) and {k: v for k, v in environment.items() if k in env} == env
    assert all(type(environment[k]) is str for k in env)
    argv = command(play)
    assert not any(v in argv for v in HOSTILE if v not in ("--", "~"))  # `-e NAME`: values only in the environment


@pytest.mark.parametrize("value", HOSTILE[:6])
def test_a_results_csv_name_is_data(run_cli: RunCli, tmp_path: Path, value: str) -> None:
    (play,) = generate(run_cli, tmp_path, f"multiple_results: {flow(value)}")
    (fetch,) = [t for t in play["tasks"] if t["name"] == "fetch the results CSV"]
    assert play["vars"]["madengine_csv"].endswith(f"/{value}") and isinstance(play["vars"], UnsafeDict)
    assert fetch["ansible.builtin.fetch"]["src"] == "{{ madengine_csv }}"


def test_a_key_path_is_data(run_cli: RunCli, tmp_path: Path) -> None:
    generate(run_cli, tmp_path, "args: ''", target=", key: \"/k/{{ lookup('pipe', 'id') }}\\\" x: 1 ~\"")
    inventory = yaml.load((tmp_path / "proj" / "out" / "lab" / "inventory.yml").read_text(),
                          Loader=_Loader)
    host = inventory["all"]["hosts"]["10.0.0.5"]
    assert host["ansible_ssh_private_key_file"] == "/k/{{ lookup('pipe', 'id') }}\" x: 1 ~"
    assert isinstance(host, UnsafeDict) and "x" not in host
