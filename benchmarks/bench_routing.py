"""Route matching cost with 10 and with 10,000 registered routes, in the same run.

Matches the path of the last registered route and a path matching none; event paths carry a
changing id, so every lookup is new (no cache hit) unless ``--repeat`` is given. The goal:
10,000 routes cost at most 2x what 10 routes cost (1.2 scans every route).

    python benchmarks/bench_routing.py
"""

import sys
from typing import Any, Callable, Dict, List

from _harness import interleaved, median_ratio, now, report, rounds_from_env

from tiny_listener import EventNotFound, Listener


def make_app(count: int) -> Any:
    app: Any = Listener()
    for i in range(count):

        async def handler() -> None: ...

        handler.__name__ = f"handler{i}"
        app.add_on_event_hook(handler, f"GET:/api/resource{i}/{{id:int}}")
    return app


def lookup_case(app: Any, template: str, calls: int, repeat: bool) -> Callable[[], float]:
    offset = [0]

    def case() -> float:
        base = 0 if repeat else offset[0]
        offset[0] += calls
        paths: List[str] = [template.format(0 if repeat else base + i) for i in range(calls)]
        start = now()
        for path in paths:
            try:
                app.match_route(path)
            except EventNotFound:
                pass
        return (now() - start) / calls

    return case


def main() -> None:
    repeat = "--repeat" in sys.argv
    rounds = rounds_from_env(15)
    small, large = make_app(10), make_app(10_000)
    legacy_large = len(large.routes) >= 10_000 and not hasattr(large.routes, "match")
    calls_large = 200 if legacy_large else 5_000  # 1.2 scans 10,000 regexes per call
    cases: Dict[str, Callable[[], float]] = {
        "last_of_10": lookup_case(small, "GET:/api/resource9/{}", 5_000, repeat),
        "last_of_10000": lookup_case(large, "GET:/api/resource9999/{}", calls_large, repeat),
        "none_of_10": lookup_case(small, "GET:/nothing/{}", 5_000, repeat),
        "none_of_10000": lookup_case(large, "GET:/nothing/{}", calls_large, repeat),
    }
    samples = interleaved(cases, rounds)
    figures: Dict[str, Any] = {f"{name}_us": min(values) * 1e6 for name, values in samples.items()}
    figures["ratio_last_10000_vs_10"] = median_ratio(samples, "last_of_10000", "last_of_10")
    figures["ratio_none_10000_vs_10"] = median_ratio(samples, "none_of_10000", "none_of_10")
    figures["goal_ratio_at_most"] = 2.0
    report("routing" + ("-repeated-paths" if repeat else ""), figures)


if __name__ == "__main__":
    main()
