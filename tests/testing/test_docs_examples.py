"""The files shown in docs/testing.md and docs/cli.md (blocks marked ``<!-- file: NAME -->``)
are saved as they are and used: the test modules pass under pytest, the commands print what
the page says they print (``<!-- output of: COMMAND -->``: on stdout, with status 0;
``<!-- stderr of: COMMAND -->``: on stderr, with status 1)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Dict

from tests.cli_helpers import run_cli

DOCS = Path(__file__).resolve().parents[2] / "docs"
FILE_BLOCK = re.compile(r"<!--\s*file:\s*(\S+)\s*-->\s*\n```python\n(.*?)^```", re.M | re.S)
OUTPUT_OF = re.compile(r"<!--\s*output of:\s*(.+?)\s*-->\s*\n```text\n(.*?)^```", re.M | re.S)
STDERR_OF = re.compile(r"<!--\s*stderr of:\s*(.+?)\s*-->\s*\n```text\n(.*?)^```", re.M | re.S)


def files_of(page: str) -> Dict[str, str]:
    files = dict(FILE_BLOCK.findall((DOCS / page).read_text()))
    assert files, f"no <!-- file: NAME --> block in docs/{page}"
    return files


def test_the_testing_page_tests_pass(tmp_path: Path) -> None:
    files = files_of("testing.md")
    for name, code in files.items():
        (tmp_path / name).write_text(code)
    ini = "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    (tmp_path / "pytest.ini").write_text(ini)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-W", "error", "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    tests = sum(code.count("\ndef test_") + code.count("\nasync def test_") for code in files.values())
    assert f"{tests} passed" in done.stdout, done.stdout


def test_the_cli_page_commands_print_what_it_shows(tmp_path: Path) -> None:
    for name, code in files_of("cli.md").items():
        (tmp_path / name).write_text(code)
    shown = OUTPUT_OF.findall((DOCS / "cli.md").read_text())
    assert shown
    for command, expected in shown:
        args = command.split()
        assert args[0] == "tiny-listener", command
        result = run_cli(*args[1:], cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout == expected, f"{command}:\n{result.stdout}"


def test_the_cli_page_failures_print_what_it_shows(tmp_path: Path) -> None:
    for name, code in files_of("cli.md").items():
        (tmp_path / name).write_text(code)
    shown = STDERR_OF.findall((DOCS / "cli.md").read_text())
    assert shown
    for command, expected in shown:
        args = command.split()
        assert args[0] == "tiny-listener", command
        result = run_cli(*args[1:], cwd=tmp_path)
        assert result.returncode == 1, result.stderr
        assert result.stderr == expected, f"{command}:\n{result.stderr}"
