from __future__ import annotations

import gc
import sys
import tracemalloc
import uuid
import warnings
from typing import Callable

import pytest

from tiny_listener import (
    Convertor,
    EventNotFound,
    Listener,
    Route,
    RouteError,
    RouteShadowedWarning,
    compile_path,
    register_convertor,
    routing,
)


async def handler() -> None:
    pass


@pytest.fixture(autouse=True, params=["linear search", "prefix index"])
def search(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with each of the route table's two ways of looking up a path not
    cached: the generated linear search (tables of up to LINEAR_SEARCH_AT_MOST routes) and the
    prefix index (larger ones)."""
    if request.param == "prefix index":
        monkeypatch.setattr(routing, "LINEAR_SEARCH_AT_MOST", -1)
    return str(request.param)


def make_route(path: str) -> Route:
    return Route(path, handler)


@pytest.mark.parametrize(
    ("path", "event_path", "expected"),
    [
        ("/user/{name}", "/user/bob", {"name": "bob"}),
        ("/user/{id:int}", "/user/42", {"id": 42}),
        ("/v/{x:float}", "/v/1.5", {"x": 1.5}),
        ("/v/{x:float}", "/v/3", {"x": 3.0}),
        ("/files/{p:path}", "/files/a/b/c.txt", {"p": "a/b/c.txt"}),
        (
            "/u/{u:uuid}",
            "/u/0b4c9d3c-1c9e-4a34-9f5e-0b1c2d3e4f50",
            {"u": uuid.UUID("0b4c9d3c-1c9e-4a34-9f5e-0b1c2d3e4f50")},
        ),
        ("order:{id:int}:created", "order:7:created", {"id": 7}),
        ("static/path", "static/path", {}),
    ],
)
def test_route_matches_and_converts(path: str, event_path: str, expected: dict[str, object]) -> None:
    assert make_route(path).match(event_path) == expected


@pytest.mark.parametrize(
    ("path", "event_path"),
    [
        ("/v/{x:float}", "/v/1x5"),  # 1.2 matched this (unescaped dot), then float() raised
        ("/user/{id:int}", "/user/abc"),
        ("/user/{name}", "/user/a/b"),
        ("/user/{id:int}", "/user/5\n"),  # "$" would match before a trailing newline
        ("static/path", "static/path/"),
        ("/u/{u:uuid}", "/u/not-a-uuid"),
    ],
)
def test_route_rejects(path: str, event_path: str) -> None:
    assert make_route(path).match(event_path) is None


def test_unknown_convertor_is_a_route_error() -> None:
    with pytest.raises(RouteError, match="unknown path convertor 'nope'"):
        compile_path("/x/{a:nope}")


def test_parameter_used_twice_is_a_route_error() -> None:
    with pytest.raises(RouteError, match="used twice"):
        compile_path("/{a}/{a}")


def test_compile_path_returns_regex_and_convertors() -> None:
    regex, convertors = compile_path("/user/{id:int}")
    match = regex.match("/user/42")
    assert match is not None and match.groupdict() == {"id": "42"}
    assert set(convertors) == {"id"}


def test_register_convertor_is_usable_in_new_routes() -> None:
    register_convertor("hexbyte", Convertor(r"[0-9a-f]{2}", lambda text: int(text, 16)))
    assert make_route("/color/{r:hexbyte}").match("/color/ff") == {"r": 255}
    assert make_route("/color/{r:hexbyte}").match("/color/fff") is None


@pytest.mark.parametrize(
    ("name", "regex", "error"),
    [("not valid", "x", "not an identifier"), ("bad", "(", "invalid regex"), ("grp", "(a)", "non-capturing")],
)
def test_register_convertor_rejects_bad_input(name: str, regex: str, error: str) -> None:
    with pytest.raises(RouteError, match=error):
        register_convertor(name, Convertor(regex, str))


def test_convertor_raising_value_error_means_no_match() -> None:
    register_convertor("even", Convertor(r"[0-9]+", lambda text: int(text) if int(text) % 2 == 0 else int("x")))
    app: Listener[object] = Listener()  # type: ignore[type-var]

    @app.on_event("/n/{n:even}")
    async def even() -> None: ...

    @app.on_event("/n/{n}")
    async def other() -> None: ...

    assert app.match_route("/n/4")[0].name == "even"
    assert app.match_route("/n/3")[0].name == "other"


def build_app(*paths: str) -> Listener:  # type: ignore[type-arg]
    app: Listener = Listener()  # type: ignore[type-arg]
    for i, path in enumerate(paths):

        async def fn() -> None: ...

        fn.__name__ = f"h{i}"
        app.add_on_event_hook(fn, path)
    return app


def test_first_registered_route_wins_across_prefixes() -> None:
    with pytest.warns(RouteShadowedWarning):
        app = build_app("{_:path}", "GET:/user/{name}")
    route, params = app.match_route("GET:/user/bob")
    assert route.name == "h0" and params == {"_": "GET:/user/bob"}


def test_longer_prefix_registered_first_wins_over_catch_all() -> None:
    app = build_app("GET:/user/{name}", "GET:/throw", "{_:path}")
    assert app.match_route("GET:/user/bob") == (app.routes["h0"], {"name": "bob"})
    assert app.match_route("GET:/throw")[0].name == "h1"
    assert app.match_route("POST:/x")[0].name == "h2"


def test_order_is_kept_among_routes_with_different_prefix_lengths() -> None:
    app = build_app("a{x}", "ab{x}", "abc{x}")
    assert app.match_route("abcd")[0].name == "h0"
    app.remove_on_event_hook("h0")
    assert app.match_route("abcd")[0].name == "h1"


def test_prefixes_of_one_length_are_found_whether_one_or_several() -> None:
    # A length with one literal prefix is looked up by that prefix alone; a second prefix of
    # that length, or removing it again, changes how it is looked up.
    app = build_app("aa:{x}")
    assert app.match_route("aa:1") == (app.routes["h0"], {"x": "1"})
    with pytest.raises(EventNotFound):
        app.match_route("bb:1")

    async def second() -> None: ...

    app.add_on_event_hook(second, "bb:{x}")
    assert app.match_route("aa:2")[0].name == "h0"
    assert app.match_route("bb:2") == (app.routes["second"], {"x": "2"})
    with pytest.raises(EventNotFound):
        app.match_route("cc:2")
    app.remove_on_event_hook("h0")
    assert app.match_route("bb:3")[0].name == "second"
    with pytest.raises(EventNotFound):
        app.match_route("aa:3")


def test_no_match_raises_event_not_found() -> None:
    app = build_app("GET:/user/{name}")
    with pytest.raises(EventNotFound, match="no route matches event path 'GET:/nope'"):
        app.match_route("GET:/nope")
    with pytest.raises(EventNotFound):  # cached miss still raises
        app.match_route("GET:/nope")


def test_route_table_changes_invalidate_cached_lookups() -> None:
    app = build_app("x/{a}")
    assert app.match_route("x/1")[0].name == "h0"

    async def newer() -> None: ...

    with pytest.warns(RouteShadowedWarning):
        app.add_on_event_hook(newer, "x/1")
    assert app.match_route("x/1")[0].name == "h0"  # still first registered
    del app.routes["h0"]
    assert app.match_route("x/1")[0].name == "newer"


def test_params_are_a_new_dict_for_every_match() -> None:
    app = build_app("x/{a:int}")
    _, first = app.match_route("x/1")
    first["a"] = 99
    assert app.match_route("x/1")[1] == {"a": 1}


def test_many_routes_match_last_and_none() -> None:
    app = build_app(*(f"GET:/api/resource{i}/{{id:int}}" for i in range(10_000)))
    route, params = app.match_route("GET:/api/resource9999/5")
    assert route.name == "h9999" and params == {"id": 5}
    with pytest.raises(EventNotFound):
        app.match_route("GET:/api/nothing/5")


def test_routes_mapping_behaves_like_the_1_2_dict() -> None:
    app = build_app("a", "b")
    assert list(app.routes) == ["h0", "h1"]
    assert len(app.routes) == 2
    assert "h0" in app.routes
    assert app.get_route("h1").path == "b"
    with pytest.raises(EventNotFound):
        app.get_route("missing")


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        ("{_:path}", "GET:/user/{name}"),
        ("GET:/{rest:path}", "GET:/user/{name}/posts"),
        ("GET:/user/{name}", "GET:/user/{id:int}"),
        ("GET:/user/{name}", "GET:/user/me"),
        ("v/{x:float}", "v/{x:int}"),
        ("a/{x}", "a/{y}"),
        ("same", "same"),
    ],
)
def test_registering_a_route_that_can_never_match_warns_naming_both(earlier: str, later: str) -> None:
    with pytest.warns(RouteShadowedWarning) as caught:
        build_app(earlier, later)
    message = str(caught[0].message)
    assert repr(later) in message and repr(earlier) in message and "h0" in message and "h1" in message


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        ("GET:/user/{id:int}", "GET:/user/{name}"),
        ("GET:/user/{name}", "GET:/user/{name}/posts"),
        ("GET:/user/me", "GET:/user/{name}"),
        ("GET:/{rest:path}", "POST:/x"),
        ("a/{x:path}/b", "a/c/d"),
    ],
)
def test_routes_that_can_still_match_do_not_warn(earlier: str, later: str) -> None:
    build_app(earlier, later)  # warnings are errors in this test suite


def test_the_seed_route_order_does_not_warn() -> None:
    build_app("GET:/user/{username}", "GET:/throw", "{_:path}")


def held_while(action: Callable[[], None]) -> int:
    """Bytes still allocated after ``action`` than before it (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        action()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    ("length", "count"),
    [
        pytest.param(60_000, 4095, id="4095 distinct 60 KB paths"),
        pytest.param(15_000, 4095, id="4095 distinct 15 KB paths"),
        pytest.param(1_000, 4095, id="4095 distinct 1 KB paths"),
    ],
)
def test_the_route_match_cache_is_bounded_in_bytes_not_only_in_entries(length: int, count: int) -> None:
    app = build_app("{line:path}")
    filler = "x" * length

    def match_them() -> None:
        for i in range(count):
            route, params = app.match_route(f"{i}:{filler}")
            assert route.name == "h0" and len(params["line"]) > length

    # 245 MB, 60 MB and 8 MB if every path and its params were kept; a few MB at most now.
    assert held_while(match_them) < 4 * 1024 * 1024
    # Short paths are still cached: the same answers, without a search.
    assert [app.match_route(f"GET:/user/{i}")[1] for i in range(3)] == [{"line": f"GET:/user/{i}"} for i in range(3)]


def test_paths_that_never_come_again_stop_filling_the_match_cache() -> None:
    app = build_app("x/{a:int}", "hot")
    table = app.routes
    table.cache_size = 8
    app.match_route("hot")
    for n in range(7):
        assert app.match_route(f"x/{n}")[1] == {"a": n}
    assert len(table._cache) == 8
    # Full, and it served no lookup: it keeps what it holds, the next 4 * 8 new paths are not kept.
    assert app.match_route("x/7")[1] == {"a": 7}
    assert "x/7" not in table._cache and len(table._cache) == 8
    for n in range(8, 8 + 15):  # two lookups each: 30 paths not kept
        route, params = app.match_route(f"x/{n}")
        assert route.name == "h0" and params == {"a": n}
        params["a"] = -1  # a path not kept hands out its own dict: nothing shared to spoil
        assert app.match_route(f"x/{n}")[1] == {"a": n}
        assert app.match_route("hot")[0].name == "h1"  # a path held is still served
    assert app.match_route("x/99")[1] == {"a": 99}  # the 31st
    assert set(table._cache) == {"hot", *(f"x/{n}" for n in range(7))}
    assert app.match_route("x/100")[1] == {"a": 100}  # the 32nd: the cache is emptied...
    assert len(table._cache) == 0
    assert app.match_route("x/101")[1] == {"a": 101}  # ...and fills anew
    assert list(table._cache) == ["x/101"]


def test_the_pause_in_caching_doubles_while_refilled_caches_serve_nothing() -> None:
    app = build_app("x/{a:int}")
    table = app.routes
    table.cache_size = 8
    paths = (f"x/{n}" for n in range(10**6))

    def paths_not_kept_after_a_fill(served: bool) -> int:
        """Fill the cache with new paths (then look each up again if ``served``); return how
        many new paths are then not kept, until caching starts again."""
        while len(table._cache) < 8:
            app.match_route(next(paths))
        if served:
            for path in list(table._cache):
                app.match_route(path)
        not_kept = 0
        while True:
            path = next(paths)
            assert app.match_route(path)[1] == {"a": int(path[2:])}
            if path in table._cache:
                return not_kept
            not_kept += 1

    # The path that finds the cache full, then 4, 8, 16, 32, 64 (at most) times cache_size.
    assert [paths_not_kept_after_a_fill(served=False) for _ in range(6)] == [33, 65, 129, 257, 513, 513]
    assert paths_not_kept_after_a_fill(served=True) == 0  # it served lookups: emptied, caching goes on
    assert paths_not_kept_after_a_fill(served=False) == 33  # and the next pause is the first again
    assert paths_not_kept_after_a_fill(served=False) == 65
    table.clear_cache()
    assert paths_not_kept_after_a_fill(served=False) == 33


def test_a_match_cache_that_serves_lookups_keeps_caching_when_full() -> None:
    app = build_app("x/{a:int}")
    table = app.routes
    table.cache_size = 8
    for n in range(8):
        app.match_route(f"x/{n}")
        app.match_route(f"x/{n}")  # served from the cache
    assert app.match_route("x/8")[1] == {"a": 8}
    assert list(table._cache) == ["x/8"]  # emptied when full, and still caching


TAIL_CASES = [
    "n:12", "n:007", "n:", "n:\u0661\u0662", "n:\u00b2", "n:12\n", "n:1/2", "n:-3", "n: 4", "n:" + "9" * 5000,
    "s:bob", "s:", "s:a/b", "s:x\n", "s:\u00fc", "s:a:b", "s:/", "x:1",
]


@pytest.mark.parametrize("event_path", TAIL_CASES)
def test_a_prefix_and_one_parameter_route_matches_exactly_what_its_regex_matches(event_path: str) -> None:
    # The route table checks the parameter of these routes without the regex: the same answer.
    app = build_app("n:{n:int}", "s:{s}")
    expected = None
    for route in app.routes.values():
        params = route.match(event_path)  # the regex, then the convertor
        if params is not None:
            expected = (route.name, params)
            break
    for _ in range(2):  # searched, then from the match cache
        try:
            route, params = app.match_route(event_path)
            found = (route.name, params)
        except EventNotFound:
            found = None
        assert found == expected


def test_linear_search_and_prefix_index_find_the_same_route() -> None:
    # Routes of every shape, several sharing prefixes or prefix lengths, one that matches
    # everything; registered so that later ones are often shadowed for some paths only.
    paths = [
        "a:{x}", "a:{x:int}", "a:{x}:{y}", "ab:{x:int}", "b:{p:path}", "static", "a:1", "{any}",
        "c:{v:float}", "c:{u:uuid}", "cd:{x}/{y:int}", "d", "b:x/{y}",
    ]
    events = [
        "a:1", "a:x", "a:1:2", "a:", "ab:12", "ab:x", "b:x/y", "b:", "static", "statics", "d", "c:1.5",
        "c:0b4c9d3c-1c9e-4a34-9f5e-0b1c2d3e4f50", "cd:a/1", "cd:a/b", "zzz", "", "a:\u0661", "b:x/q",
    ]
    for start in range(len(paths)):
        order = paths[start:] + paths[:start]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RouteShadowedWarning)
            table = build_app(*order).routes
        linear = routing._linear_search(list(table.values()))
        for event in events:
            assert linear(event) == table._search(event), (order, event)


@pytest.mark.skipif(not hasattr(sys, "get_int_max_str_digits"), reason="int() has no digit limit before 3.11")
def test_an_int_too_long_for_int_does_not_match_the_int_route() -> None:
    app = build_app("n:{x:int}", "n:{x}")
    digits = "1" * (sys.get_int_max_str_digits() + 1)
    assert app.match_route(f"n:{digits}") == (app.routes["h1"], {"x": digits})
    assert app.match_route("n:12") == (app.routes["h0"], {"x": 12})
