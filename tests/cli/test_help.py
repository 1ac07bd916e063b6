"""What a user reads from the parser: every command's --help (no Python types, an example at the end),
one --json spelling, usage errors in madengine's words, and shell completion."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.conftest import RunCli

USAGE = 4


def subcommands(help_text: str) -> list[str]:
    if "\nCommands:\n" not in help_text:
        return []
    section = help_text.split("\nCommands:\n", 1)[1].split("\n\n", 1)[0]
    return [m.group(1) for m in re.finditer(r"^  (\S+)", section, re.MULTILINE)]


def every_command(run_cli: RunCli, cwd: Path) -> dict[tuple[str, ...], str]:
    """Each command path, found as a user would (the Commands: section of each help), with its help."""
    found: dict[tuple[str, ...], str] = {}
    todo: list[tuple[str, ...]] = [()]
    while todo:
        path = todo.pop()
        code, out, err = run_cli(*path, "--help", cwd=cwd)
        assert (code, err) == (0, ""), path
        if path:
            found[path] = out
        todo.extend((*path, name) for name in subcommands(out))
    return found


def examples(help_text: str) -> list[str]:
    """The command lines of the help's last section, which must be its examples."""
    _, sep, tail = help_text.rpartition("\n  Example")
    assert sep, "no example"
    title, *lines = tail.rstrip("\n").split("\n")
    assert title in (":", "s:") and lines[0] == "", title
    return [line.strip() for line in lines[1:]]


def test_every_command_help_shows_no_python_type_and_ends_with_an_example(run_cli: RunCli, tmp_path: Path) -> None:
    helps = every_command(run_cli, tmp_path)
    assert {" ".join(p) for p in helps} >= {"init", "validate", "lock", "graph", "plan", "apply", "discover", "run",
                                            "build", "results", "state", "state list", "state show",
                                            "state forget", "unlock"}
    for path, text in helps.items():
        name = " ".join(path)
        usage = text.splitlines()[0]
        assert re.fullmatch(rf"Usage: madengine {name} \[OPTIONS\]( COMMAND \[ARGS\]\.\.\.)?( \[?[A-Z]+\]?(\.\.\.)?)*",
                            usage), usage  # NAME, [NAME] or [NAME]...: no {name}, no [[NAME]...]...
        assert not re.search(r"<[a-z][^>]*>", text), (name, text)  # no <path>, <int range>, <list[str]>
        assert "[[" not in text and "list[" not in text, (name, text)
        lines = examples(text)
        assert lines and all(line.startswith(f"madengine {name}") for line in lines), (name, lines)


def test_every_example_names_real_options(run_cli: RunCli, tmp_path: Path) -> None:
    """An example's options exist (click rejects an unknown one before --help, which stops the rest)."""
    for text in every_command(run_cli, tmp_path).values():
        for line in examples(text):
            for command in line.split(" && "):
                argv = shlex.split(command)[1:]
                assert run_cli(*argv, "--help", cwd=tmp_path).code == 0, command


def test_one_json_spelling(run_cli: RunCli, tmp_path: Path) -> None:
    helps = every_command(run_cli, tmp_path)
    for path, text in helps.items():
        options = re.findall(r"^  (-[^ ].*?)(?:  |$)", text, re.MULTILINE)
        spellings = {word for o in options for word in re.findall(r"--[a-z-]*json[a-z-]*", o)}
        assert spellings <= {"--json"}, (path, spellings)
    listing = [p for p in (("validate",), ("lock",), ("graph",), ("plan",), ("discover",), ("results",),
                           ("state", "list"), ("state", "show"))]
    assert all("\n  --json " in helps[p] for p in listing)
    code, out, err = run_cli("graph", "--format", "json", cwd=tmp_path)
    assert (code, out) == (USAGE, "")
    assert err.splitlines()[-1] == ("Error: Invalid value for '--format': 'json' is not one of dot, mermaid, "
                                    "graphml; for JSON, pass --json.")


@pytest.mark.parametrize(("args", "message"), [
    (["graph", "--format", "svg"], "Invalid value for '--format': 'svg' is not one of dot, mermaid, graphml."),
    (["apply", "-j", "0"], "Invalid value for '--parallelism' / '-j': 0 is out of range: it must be at least 1."),
    (["apply", "-j", "many"], "Invalid value for '--parallelism' / '-j': 'many' is not a whole number."),
    (["run", "--timeout", "1.5"], "Invalid value for '--timeout': '1.5' is not a whole number."),
    (["results", "--apply", "last"], "Invalid value for '--apply': 'last' is not a whole number."),
    (["state", "show"], "Missing argument 'ADDRESS'."),
    (["lock", "--bogus"], "No such option: --bogus"),
    (["frobnicate"], "No such command 'frobnicate'."),
])
def test_usage_errors_are_in_madengine_words(run_cli: RunCli, tmp_path: Path, args: list[str], message: str) -> None:
    code, out, err = run_cli(*args, cwd=tmp_path)
    assert (code, out) == (USAGE, "")
    assert err.splitlines()[-1] == f"Error: {message}"
    assert err.startswith("Usage: madengine ") and "Value error" not in err and "Input should" not in err


def test_shell_completion(run_cli: RunCli, tmp_path: Path) -> None:
    code, out, err = run_cli("--help", cwd=tmp_path)
    assert "--install-completion" in out and "--show-completion" in out
    # Without a shell among its ancestors (a detached CI runner) typer cannot detect one; its own switch makes
    # the options take the shell's name instead, as a user's `--show-completion bash` means.
    named = {"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    code, out, err = run_cli("--show-completion", "bash", cwd=tmp_path, env=named)
    assert (code, err) == (0, "") and "_MADENGINE_COMPLETE=complete_bash" in out
    assert out.rstrip().endswith("madengine")  # `complete ... madengine`: bound to the command's name

    def complete(words: str) -> list[str]:
        env = {"_MADENGINE_COMPLETE": "complete_bash", "COMP_WORDS": words,
               "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1))}
        code, out, err = run_cli(cwd=tmp_path, env=env)
        assert (code, err) == (0, "")
        return out.split()

    assert complete("madengine pl") == ["plan"]
    assert complete("madengine state f") == ["forget"]
    assert complete("madengine graph --format ") == ["dot", "mermaid", "graphml"]
    # --install-completion writes the script where bash reads it, under $HOME.
    code, out, err = run_cli("--install-completion", "bash", cwd=tmp_path, env={**named, "HOME": str(tmp_path)})
    assert code == 0, err
    assert "_MADENGINE_COMPLETE" in (tmp_path / ".bash_completions" / "madengine.sh").read_text(encoding="utf-8")
    assert ".bash_completions/madengine.sh" in (tmp_path / ".bashrc").read_text(encoding="utf-8")
