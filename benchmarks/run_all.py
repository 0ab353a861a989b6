"""Run every core benchmark against this tiny-listener and against tiny-listener 1.2.1.

    python benchmarks/run_all.py            # makes .bench-venv-1.2/ on first use (pip, PyPI)
    python benchmarks/run_all.py --no-legacy

Each benchmark script runs in the current interpreter (this project, installed) and in a
virtualenv holding tiny-listener 1.2.1; the two are alternated and the table shows both
figures and their ratio. Figures inside one script (ours vs a bare baseline) are measured in
the same run; ours vs 1.2 comes from runs made one after the other.
"""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any, Dict, List

HERE = Path(__file__).resolve().parent
LEGACY_VENV = HERE.parent / ".bench-venv-1.2"
SCRIPTS = ["bench_dispatch.py", "bench_routing.py", "bench_waiting.py", "bench_memory.py"]


def legacy_python() -> Path:
    python = LEGACY_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {LEGACY_VENV} with tiny-listener==1.2.1", flush=True)
        venv.create(LEGACY_VENV, with_pip=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "tiny-listener==1.2.1"], check=True)
    return python


def run(python: str, script: str) -> Dict[str, Any]:
    result = subprocess.run([python, str(HERE / script)], capture_output=True, text=True, cwd=HERE, check=False)
    for line in result.stdout.splitlines():
        if line.startswith("JSON "):
            figures: Dict[str, Any] = json.loads(line[5:])
            return figures
    raise RuntimeError(f"{script} under {python} printed no figures:\n{result.stdout}\n{result.stderr}")


def main() -> None:
    with_legacy = "--no-legacy" not in sys.argv
    pythons: List[str] = [sys.executable]
    if with_legacy:
        pythons.append(str(legacy_python()))
    for script in SCRIPTS:
        results = [run(python, script) for python in pythons]
        print(f"\n== {results[0]['benchmark']}  ({script})")
        keys = [k for k in results[0] if k not in ("benchmark", "python", "tiny_listener")]
        header = f"  {'figure':<40} {'this (' + results[0]['tiny_listener'] + ')':>18}"
        if len(results) > 1:
            header += f" {'1.2 (' + results[1]['tiny_listener'] + ')':>18} {'this/1.2':>10}"
        print(header)
        for key in keys:
            ours = results[0][key]
            line = f"  {key:<40} {ours:>18.3f}" if isinstance(ours, float) else f"  {key:<40} {ours!s:>18}"
            if len(results) > 1:
                legacy = results[1].get(key)
                if isinstance(legacy, (int, float)) and isinstance(ours, (int, float)):
                    ratio = f"{ours / legacy:.3f}" if legacy else "-"
                    line += f" {legacy:>18.3f} {ratio:>10}"
                else:
                    line += f" {legacy!s:>18}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
