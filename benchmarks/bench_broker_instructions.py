"""Instructions per event of each broker's consumer, tiny-listener against the bare client
loop, counted by valgrind instead of timed: steady where CPU time is not (on a shared machine,
``bench_brokers.py``'s CPU times moved by a factor of three from one day to the next).

Runs ``bench_brokers.py`` unchanged (its drivers, consumers and end checks) for one round of
its ``tiny_listener`` and ``bare`` sides, at two sizes, with every consumer process under
``valgrind --tool=callgrind``, and divides the difference in instructions by the difference in
events: imports, connecting and set-up cancel out, what is left is the cost of an event, the
client library's included. The ratio is the instruction counterpart of ``bench_brokers.py``'s
CPU ratio (the goal of issue 13: at most 1.2x); instructions are not time (a cache miss costs
more than an addition), so it is a second figure, not a replacement.

    python benchmarks/bench_broker_instructions.py                    # every broker
    python benchmarks/bench_broker_instructions.py --broker redis --small 2000 --large 6000

Kafka (``--broker kafka``): ``bench_kafka.py`` runs its contestants in its own process, beside
the producer that fills the topic, so the whole process runs under valgrind, once per side
(``BENCH_KAFKA_ONLY``) and once filling the topic only; the count of that last run is taken
out of each side's before dividing. The broker (Tansu) runs outside valgrind.

Needs ``valgrind``. A consumer runs about 50 times slower under it: a few minutes per broker.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict

from _harness import eprint, report

HERE = Path(__file__).resolve().parent
BROKERS = ("redis", "nats", "rabbitmq", "mqtt", "kafka")
SIDES = ("tiny_listener", "bare")


def instructions(path: Path) -> int:
    """The total instruction count callgrind wrote in ``path``."""
    with path.open() as found:
        for line in found:
            if line.startswith("summary:"):
                return int(line.split()[1])
    raise SystemExit(f"no instruction count in {path}")


def count(broker: str, events: int, directory: Path) -> Dict[str, int]:
    """Run one round of both sides with ``events`` messages; return each consumer's count."""
    env = dict(os.environ, BENCH_EVENTS=str(events), BENCH_CALLGRIND_DIR=str(directory))
    command = [sys.executable, str(HERE / "bench_brokers.py"), "--broker", broker, "--rounds", "1"]
    for side in SIDES:
        command += ["--side", side]
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, timeout=3600)
    return {side: instructions(directory / f"{broker}-{side}-{events}.out") for side in SIDES}


def count_kafka(events: int, directory: Path) -> Dict[str, int]:
    """Run ``bench_kafka.py`` for each side and for filling the topic only, with ``events``
    records, under valgrind; return each count, the filling's taken out of the sides'."""
    counts: Dict[str, int] = {}
    for side in (*SIDES, "fill_only"):
        out = directory / f"kafka-{side}-{events}.out"
        env = dict(os.environ, BENCH_KAFKA_EVENTS=str(events), BENCH_KAFKA_ONLY=side, BENCH_ROUNDS="1")
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", f"--log-file={out}.log",
                        sys.executable, str(HERE / "bench_kafka.py")],
                       env=env, check=True, stdout=subprocess.DEVNULL, timeout=3600)
        counts[side] = instructions(out)
    return {side: counts[side] - counts["fill_only"] for side in SIDES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--broker", action="append", choices=BROKERS, help="a broker to measure (repeat it)")
    parser.add_argument("--small", type=int, default=2000, help="events in the first run")
    parser.add_argument("--large", type=int, default=6000, help="events in the second run")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed: apt-get install valgrind")
    if args.large <= args.small:
        raise SystemExit("--large must be more than --small")
    started = time.monotonic()
    results: Dict[str, float] = {"events_small": args.small, "events_large": args.large}
    with tempfile.TemporaryDirectory(prefix="tl-callgrind-") as scratch:
        for broker in args.broker or list(BROKERS):
            if broker == "kafka":
                small, large = count_kafka(args.small, Path(scratch)), count_kafka(args.large, Path(scratch))
            else:
                small, large = count(broker, args.small, Path(scratch)), count(broker, args.large, Path(scratch))
            per_event = {side: (large[side] - small[side]) / (args.large - args.small) for side in SIDES}
            eprint(f"{broker}: " + ", ".join(f"{side}={value:,.0f}" for side, value in per_event.items())
                   + " instructions per event")
            for side, value in per_event.items():
                results[f"{broker}_{side}_instructions_per_event"] = value
            results[f"{broker}_instructions_ours_over_bare"] = per_event["tiny_listener"] / per_event["bare"]
    report("broker_instructions", results)
    eprint(f"took {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    main()
