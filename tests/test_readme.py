"""The README's quick tour is a complete program: it must run as printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_quick_tour_runs(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no python block"
    program = tmp_path / "tour.py"
    program.write_text(blocks[0])
    result = subprocess.run([sys.executable, str(program)], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"tick {n} hello tick:{n} clock" for n in range(3)]
