"""The one ``portway`` command: ``--version``, help on every option of every (sub)command, exit
codes and the error prefix; and ``make help`` listing every Makefile target."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from portway import cli
from portway.worker import static

REPO = Path(__file__).parents[1]


def parsers(
    parser: argparse.ArgumentParser, path: str
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from parsers(sub, f"{path} {name}")


def every_parser() -> list[tuple[str, argparse.ArgumentParser]]:
    return [*parsers(cli.build_parser(), "portway"), *parsers(static.build_parser(), "static")]


def test_every_option_and_command_has_help() -> None:
    missing: list[str] = []
    walked = every_parser()
    for path, parser in walked:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                listed = {choice.dest for choice in action._choices_actions}
                missing += [f"{path} {name}" for name in action.choices if name not in listed]
            elif not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert len(walked) > 20  # the walk reached the nested commands
    assert not missing, f"options without help text: {missing}"


def test_the_walk_catches_an_option_without_help() -> None:
    parser = argparse.ArgumentParser()
    parser.add_subparsers().add_parser("sub").add_argument("--bare")
    [_, (_, sub)] = list(parsers(parser, "x"))
    assert [a.option_strings for a in sub._actions if not a.help] == [["--bare"]]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"portway {version('portway')}\n"


def test_usage_and_configuration_errors_exit_2_with_one_prefix(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as exited:  # argparse's own usage error
        cli.main(["worker"])
    assert exited.value.code == 2
    assert "portway worker: error: the following arguments are required: --environment" in (
        capsys.readouterr().err
    )
    bad = tmp_path / "portway.yaml"
    bad.write_text("manager: {port: 0}\n")
    assert cli.main(["deployment", "render", "--config", str(bad), "--target", "haproxy"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("portway: error: "), err
    assert cli.main(["worker", "--environment", "dev", "--config", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.startswith("portway: error: ")


def test_the_module_and_the_console_script_exit_alike() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "portway", "config", "check", "/nonexistent/portway.yaml"],
        capture_output=True, text=True, check=False, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 2
    assert "/nonexistent/portway.yaml" in result.stderr


def test_make_help_lists_every_target() -> None:
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.MULTILINE))
    documented = set(re.findall(r"^## ([a-z][a-z-]*): \S", makefile, re.MULTILINE))
    assert targets == documented, "every Makefile target needs a `## target: what it does` line"
    listed = subprocess.run(
        ["make", "--no-print-directory", "-s", "help"],
        capture_output=True, text=True, check=True, cwd=REPO,
    ).stdout  # fmt: skip
    assert sorted(line.split()[0] for line in listed.splitlines()) == sorted(targets)
