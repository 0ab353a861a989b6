"""Routes and the route table.

A route path is literal text with ``{name}`` or ``{name:convertor}`` parameters, for example
``"GET:/user/{username}"`` or ``"order:{id:int}:created"``. Paths are compiled once, when the
route is registered.

The table finds the route for an event path without trying every route: routes are indexed by
their literal prefix (the text before the first parameter), so only the routes whose prefix
starts the event path are tried, and among those the first registered one that matches wins,
as in 1.2. The cost of a lookup depends on how many distinct prefix lengths there are, not on
how many routes there are.
"""

from __future__ import annotations

import re
import sys
import uuid
from typing import Any, Callable, Dict, Iterator, List, Mapping, MutableMapping, Pattern, Tuple

from ._types import CoroFunc, PathParams
from .convertors import CONVERTOR_TYPES, INT, STR, Convertor
from .destinations import PUBLISH_TO_OPT, Destination
from .errors import EventNotFound, RouteError
from .injection import Hook

PARAM_REGEX = re.compile(r"{([a-zA-Z_]\w*)(:[a-zA-Z_]\w*)?}")


def compile_path(path: str) -> Tuple[Pattern[str], Dict[str, Convertor]]:
    """Compile a route path into an anchored regex and the convertor of each parameter.

    >>> regex, convertors = compile_path("/user/{id:int}")
    >>> regex.match("/user/42").groupdict()
    {'id': '42'}

    Raises :class:`RouteError` for an unknown convertor or a parameter used twice.
    """
    idx = 0
    path_regex = "^"
    convertors: Dict[str, Convertor] = {}
    for match in PARAM_REGEX.finditer(path):
        param_name, convertor_type = match.groups("str")
        convertor_type = convertor_type.lstrip(":")
        if convertor_type not in CONVERTOR_TYPES:
            raise RouteError(f"unknown path convertor {convertor_type!r} in route {path!r}")
        if param_name in convertors:
            raise RouteError(f"path parameter {param_name!r} is used twice in route {path!r}")
        convertor = CONVERTOR_TYPES[convertor_type]
        path_regex += re.escape(path[idx : match.start()])
        path_regex += f"(?P<{param_name}>{convertor.regex})"
        convertors[param_name] = convertor
        idx = match.end()
    # \Z, not $: "$" also matches before a trailing newline.
    path_regex += re.escape(path[idx:]) + r"\Z"
    return re.compile(path_regex), convertors


def _shape(path: str) -> Tuple[str, ...]:
    """Literal texts and convertor kinds, alternating: "GET:/u/{name}/{n:int}" ->
    ("GET:/u/", "str", "/", "int", "")."""
    pieces = PARAM_REGEX.split(path)  # literal, name, ":kind" or None, literal, ...
    shape: List[str] = []
    for i in range(0, len(pieces), 3):
        shape.append(pieces[i])
        if i + 2 < len(pieces):
            shape.append((pieces[i + 2] or ":str")[1:])
    return tuple(shape)


# Convertor kinds whose every match another kind also matches: {kind: kinds that cover it}.
_COVERED_BY = {"int": {"str", "float", "path"}, "float": {"str", "path"}, "uuid": {"str", "path"}, "str": {"path"}}


def covers(earlier: Route, later: Route) -> bool:
    """True if every path ``later`` matches is matched by ``earlier`` (which then always wins).

    Decided on route shapes, conservatively: a static ``later`` is covered when ``earlier``
    matches its text; otherwise ``earlier`` must be a literal prefix then one ``path``
    parameter, or have the same literals as ``later`` with a convertor that covers each of
    ``later``'s.
    """
    if later._is_static:
        return earlier.match_raw(later.path) is not None
    first = earlier.shape
    if len(first) == 3 and first[1] == "path" and first[2] == "":
        return later.literal_prefix.startswith(first[0])
    second = later.shape
    if len(first) != len(second):
        return False
    for i, (mine, theirs) in enumerate(zip(first, second)):
        if i % 2 == 0:
            if mine != theirs:
                return False
        elif mine != theirs and mine not in _COVERED_BY.get(theirs, ()):
            return False
    return True


class Route:
    """A handler bound to a path. ``opts`` keeps the extra options given to ``on_event``;
    ``publish_to`` (the option of that name, see :mod:`tiny_listener.destinations`) is where
    broker sources publish what the handler returns, or None.

    Raises :class:`RouteError` if the path does not compile or ``publish_to`` names a field
    that is not a path parameter, ``TypeError`` if ``fn`` is not an ``async def`` function or
    one of its parameters cannot be injected.
    """

    def __init__(self, path: str, fn: CoroFunc, opts: Dict[str, Any] | None = None) -> None:
        self.name: str = fn.__name__
        self.path = path
        self.fn = fn
        self.path_regex, self.convertors = compile_path(path)
        self.opts: Dict[str, Any] = opts or {}
        destination = self.opts.get(PUBLISH_TO_OPT)
        self.publish_to: Destination | None = (
            None if destination is None else Destination(destination, path, self.convertors)
        )
        self.hook = Hook(fn)
        self._invoke = self.hook._invoke
        # A handler of data and path parameters only, run by a source without an event (see
        # Listener._event_here); None if it reads its event, context or a dependency.
        self._invoke_data = self.hook._invoke_data
        self._reads_context_if_no_data = self.hook._reads_context_if_no_data
        first_param = PARAM_REGEX.search(path)
        self.literal_prefix = path if first_param is None else path[: first_param.start()]
        self._is_static = first_param is None
        self.shape = _shape(path)
        # Only non-str convertors need a call per match.
        # Values of the built-in convertors are immutable: a cached lookup can hand out copies
        # of the converted parameters. Other convertors run for every match.
        self._convert_per_match = any(conv.convert not in _IMMUTABLE_RESULTS for conv in self.convertors.values())
        self._converting: Tuple[Tuple[str, Callable[[str], Any]], ...] = tuple(
            (name, conv.convert) for name, conv in self.convertors.items() if conv.convert is not str
        )
        # A literal prefix then one built-in str or int parameter ("order:{id}", "/u/{n:int}"),
        # the commonest shape of a route with parameters: what follows the prefix is the
        # parameter, checked with str methods rather than the regex (half the cost).
        self._tail: Tuple[int, str, bool] | None = None
        if len(self.shape) == 3 and self.shape[2] == "":
            ((name, convertor),) = self.convertors.items()
            if convertor is INT or convertor is STR:
                self._tail = (len(self.literal_prefix), name, convertor is INT)

    def match(self, path: str) -> PathParams | None:
        """Return the converted path parameters if ``path`` matches this route, else ``None``."""
        raw = self.match_raw(path)
        return None if raw is None else self.convert(raw)

    def match_raw(self, path: str) -> Dict[str, str] | None:
        """Return the parameters' matched text if ``path`` matches, else ``None``.

        A convertor that raises ``ValueError`` on the matched text makes the route not match.
        """
        if self._is_static:
            return {} if path == self.path else None
        found = self.path_regex.match(path)
        if found is None:
            return None
        raw = found.groupdict()
        if self._converting:
            try:
                self.convert(raw)
            except ValueError:
                return None
        return raw

    def _template_lines(self, returning: str) -> List[str] | None:
        """Python lines that return ``returning`` followed by the route's template (see
        :meth:`_match_template`) for a ``path`` it matches and fall through for one it does
        not, if the route is static or a tail route; None for a route the regex matches.
        ``_match_template`` is compiled from them, and the route table's linear search
        inlines them: one definition of both."""
        if self._is_static:
            return [f"if path == {self.path!r}:", f"    return {returning}{{}}"]
        if self._tail is None:
            return None
        start, name, digits = self._tail
        if digits:
            return [
                f"_v = path[{start}:]",
                # [0-9]+: isdigit() alone also takes other scripts' digits and superscripts.
                "if _v.isdigit() and _v.isascii():",
                "    try:",
                f"        return {returning}{{{name!r}: int(_v)}}",
                "    except ValueError:  # more digits than int() converts (sys.set_int_max_str_digits)",
                "        pass",
            ]
        return [f"_v = path[{start}:]", "if _v and '/' not in _v:", f"    return {returning}{{{name!r}: _v}}"]

    def _match_template(self, path: str) -> PathParams | None:
        """What the route table keeps for a path this route matches (None if it does not):
        the converted parameters, or their matched text for a route whose convertors must run
        for every match. The convertors run once here, not once to check and once again.

        ``path`` starts with the route's literal prefix (the route table looks routes up by it).
        The first call puts in its place, for this route, code compiled from
        :meth:`_template_lines` or :meth:`_match_regex` (compiling when routes are made would
        slow down registering thousands of them).
        """
        lines = self._template_lines("")
        chosen = self._match_regex if lines is None else _compiled("match_template", [*lines, "return None"], {})
        self._match_template = chosen  # type: ignore[method-assign]
        return chosen(path)

    def _match_regex(self, path: str) -> PathParams | None:
        """:meth:`_match_template` of a route that is neither static nor a tail route."""
        found = self.path_regex.match(path)
        if found is None:
            return None
        raw: Dict[str, Any] = found.groupdict()
        if not self._converting:
            return raw
        if self._convert_per_match:  # checked here, converted again for every match
            try:
                self.convert(raw)
            except ValueError:
                return None
            return raw
        try:  # in place: the dict is new
            for name, convert in self._converting:
                raw[name] = convert(raw[name])
        except ValueError:
            return None
        return raw

    def convert(self, raw: Dict[str, str]) -> PathParams:
        """Return a new dict of the converted values of ``raw`` (from :meth:`match_raw`)."""
        params: PathParams = dict(raw)
        for name, convert in self._converting:
            params[name] = convert(params[name])
        return params

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(path={self.path!r}, name={self.name!r}, opts={self.opts})"


_IMMUTABLE_RESULTS = frozenset({str, int, float, uuid.UUID})

# What RouteTable's cache gives for a path it does not hold (None is a cached "no route").
_NOT_CACHED: Any = object()

# (registration order, route) pairs that share one literal prefix, in registration order.
_Candidates = List[Tuple[int, Route]]

# The routes whose literal prefixes have one length: (length, {prefix: candidates}, and if
# there is only one such prefix, that prefix and its candidates, else None and []).
_Bucket = Tuple[int, Dict[str, _Candidates], "str | None", _Candidates]


_Search = Callable[[str], "Tuple[Route, PathParams] | None"]

# Up to this many routes, a table looks paths up with a function generated for its routes
# (see _linear_search); past it, with the prefix index, which stays flat with thousands.
LINEAR_SEARCH_AT_MOST = 16


def _linear_search(routes: List[Route]) -> _Search:
    """Generate ``search(path)``: the first of ``routes`` (in registration order) whose
    literal prefix starts ``path`` and that matches it, with its template (see
    ``Route._match_template``), or None. What ``RouteTable._search`` finds, without its loops
    over buckets and candidates, tuple unpacking and order bookkeeping: on a path not cached
    (one that carries an id) that was a sixth of a route match."""
    env: Dict[str, Any] = {}
    lines: List[str] = []
    for order, route in enumerate(routes):
        env[f"_r{order}"] = route
        inlined = route._template_lines(f"_r{order}, ")
        if route._is_static:  # its lines test the whole path
            lines += inlined or []
            continue
        if inlined is None:
            env[f"_m{order}"] = route._match_regex
            inlined = [f"_t = _m{order}(path)", "if _t is not None:", f"    return _r{order}, _t"]
        if route.literal_prefix:
            lines += [f"if path.startswith({route.literal_prefix!r}):", *(f"    {line}" for line in inlined)]
        else:
            lines += inlined
    search: _Search = _compiled("search", [*lines, "return None"], env)
    return search


def _compiled(name: str, body: List[str], env: Dict[str, Any]) -> Any:
    """The function ``name(path)`` with ``body``, compiled in ``env``."""
    source = f"def {name}(path):\n" + "".join(f"    {line}\n" for line in body)
    exec(compile(source, f"<tiny_listener route {name}>", "exec"), env)  # noqa: S102
    return env[name]


def _bucket(length: int, table: Dict[str, _Candidates]) -> _Bucket:
    if len(table) == 1:
        ((prefix, candidates),) = table.items()
        return length, table, prefix, candidates
    return length, table, None, []


class RouteTable(MutableMapping[str, Route]):
    """The routes of a listener, keyed by handler name, in registration order.

    It behaves as the ``dict`` that 1.2 exposed as ``listener.routes``. A path is looked up
    among at most ``LINEAR_SEARCH_AT_MOST`` routes by a function generated for them (each
    route's literal prefix tested in registration order), generated anew when a route is
    added, replaced or removed; among more, in an index of literal prefixes by length, which
    stays flat with thousands of routes. Adding a route updates that index in place; removing
    or replacing one rebuilds it on the next lookup. Event
    paths seen lately are remembered with their route, so a path seen again skips the search
    (its parameters are still converted anew for every event): at most ``cache_size`` of them,
    none longer than ``cache_path_limit`` characters, ``cache_chars`` characters in all; the
    cache is emptied when it is full. Memory it holds is bounded whatever paths clients send.

    Paths that never come again (an id in every path) would only churn the cache: when a full
    cache served fewer lookups than it holds paths, it keeps serving them but the next
    ``4 * cache_size`` new paths are not kept; then it is emptied and fills anew. Each time in a
    row that a refilled cache again served too few lookups, the pause doubles, up to
    ``64 * cache_size`` new paths (filling a cache that nobody reads cost a fifth of a route
    match on such paths); a cache that serves enough lookups starts over at ``4 *``.
    """

    cache_size = 4096
    cache_path_limit = 1024
    cache_chars = 1024 * 1024

    def __init__(self, routes: Mapping[str, Route] | None = None) -> None:
        """Start with ``routes`` (name -> route, in that order), if given.

        Raises ``TypeError`` if one of them is not a :class:`Route`.
        """
        self._routes: Dict[str, Route] = {}
        # {prefix length: {prefix: candidates}}; None when stale (after a removal).
        self._tables: Dict[int, Dict[str, _Candidates]] | None = {}
        # The same tables, longest prefixes first: they are the most specific, so the first
        # match found there usually has the lowest order and lets the shorter buckets stop at
        # once. See _Bucket.
        self._index: Tuple[_Bucket, ...] = ()
        # event path -> (route, converted params, or raw ones if converted per match), or None.
        self._cache: Dict[str, Tuple[Route, PathParams] | None] = {}
        self._cache_hits = 0  # since the cache was last emptied
        self._paths_not_kept = 0  # how many more new paths are not cached (see the class)
        # How a path not cached is looked up: _linear_search's function, or _search.
        self._find: _Search = _linear_search([])
        self._idle_fills = 0  # fills in a row that served too few lookups (see the class)
        # An attribute, not a property: the broker flow reads it for every message.
        self.publishes = False
        """True if a route declares a destination for its results (``publish_to``)."""
        for name, route in (routes or {}).items():
            if not isinstance(route, Route):
                raise TypeError(f"routes[{name!r}] must be a tiny_listener.Route, not {type(route).__name__}")
            self[name] = route
        self._cached_chars = 0  # of the cached paths

    def __getitem__(self, name: str) -> Route:
        return self._routes[name]

    def __setitem__(self, name: str, route: Route) -> None:
        replacing = name in self._routes
        self._routes[name] = route
        self._forget_paths()
        self._choose_search()
        if replacing:
            self._tables = None
            self._find_destinations()
        else:
            if self._tables is not None:
                self._index_route(len(self._routes) - 1, route)
            if route.publish_to is not None:
                self.publishes = True

    def __delitem__(self, name: str) -> None:
        del self._routes[name]
        self._tables = None
        self._forget_paths()
        self._choose_search()
        self._find_destinations()

    def clear_cache(self) -> None:
        """Forget the event paths matched so far (and read each route's ``publish_to`` anew)."""
        self._forget_paths()
        self._find_destinations()

    def _forget_paths(self) -> None:
        self._empty_cache()
        self._paths_not_kept = 0
        self._idle_fills = 0

    def _choose_search(self) -> None:
        routes = self._routes
        self._find = _linear_search(list(routes.values())) if len(routes) <= LINEAR_SEARCH_AT_MOST else self._search

    def _find_destinations(self) -> None:
        self.publishes = any(route.publish_to is not None for route in self._routes.values())

    def _empty_cache(self) -> None:
        self._cache.clear()
        self._cached_chars = 0
        self._cache_hits = 0

    def __iter__(self) -> Iterator[str]:
        return iter(self._routes)

    def __len__(self) -> int:
        return len(self._routes)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({list(self._routes.values())})"

    def _index_route(self, order: int, route: Route) -> None:
        assert self._tables is not None
        prefix = route.literal_prefix
        table = self._tables.get(len(prefix))
        if table is None:
            table = self._tables[len(prefix)] = {}
        candidates = table.get(prefix)
        if candidates is None:
            candidates = table[prefix] = []
            if len(table) <= 2:  # a new length, or one that no longer has only one prefix
                self._index = tuple(sorted((_bucket(length, table) for length, table in self._tables.items()),
                                           key=lambda bucket: bucket[0], reverse=True))
        candidates.append((order, route))

    def _current_index(self) -> Tuple[_Bucket, ...]:
        if self._tables is None:
            self._tables = {}
            self._index = ()
            for order, route in enumerate(self._routes.values()):
                self._index_route(order, route)
        return self._index

    def shadowing(self, route: Route) -> Route | None:
        """Return a registered route that matches every path ``route`` matches, if any: added
        after it, ``route`` would never be chosen."""
        if route._is_static:
            found = self._search(route.path)
            return None if found is None else found[0]
        # Only routes whose literal prefix starts the new route's can cover it.
        index = self._current_index()
        prefix = route.literal_prefix
        for length, table, _, _ in index:
            if length > len(prefix):
                continue
            for _, earlier in table.get(prefix[:length], ()):
                if covers(earlier, route):
                    return earlier
        return None

    def match(self, path: str) -> Tuple[Route, PathParams]:
        """Return the first registered route matching ``path`` and its converted parameters.

        Raises :class:`EventNotFound` when no route matches.
        """
        found = self._cache.get(path, _NOT_CACHED)  # not try/except: misses are common
        if found is not _NOT_CACHED:
            self._cache_hits += 1
            if found is None:
                raise EventNotFound(f"no route matches event path {path!r}")
            route, template = found
            params = dict(template)  # the cached one stays as it is
        else:
            found = self._find(path)
            if self._paths_not_kept > 1:  # _keep() while new paths are not kept, inlined
                self._paths_not_kept -= 1
                kept = False
            else:
                kept = self._keep(path, found)
            if found is None:
                raise EventNotFound(f"no route matches event path {path!r}")
            route, params = found  # a new dict: _search made it
            if kept:
                params = dict(params)
        if route._convert_per_match:
            for name, convert in route._converting:
                params[name] = convert(params[name])
        return route, params

    def _keep(self, path: str, found: Tuple[Route, PathParams] | None) -> bool:
        """Cache what ``_search`` found for ``path``, unless it is too long or paths are not
        kept for now (see the class); return True if it was cached."""
        size = len(path)
        if size > self.cache_path_limit:  # a long path (a 60 KB line...) is searched each time
            return False
        if self._paths_not_kept:
            self._paths_not_kept -= 1
            if not self._paths_not_kept:  # cache anew: the paths that come again may be others now
                self._empty_cache()
            return False
        if len(self._cache) >= self.cache_size or self._cached_chars + size > self.cache_chars:
            if self._cache_hits < len(self._cache):
                # New paths do not come again: stop adding them for a while (longer each time
                # in a row), and keep serving the paths held (those that come again are there).
                self._paths_not_kept = (4 << min(self._idle_fills, 4)) * self.cache_size
                self._idle_fills += 1
                return False
            self._empty_cache()
            self._idle_fills = 0
        self._cache[path] = found
        self._cached_chars += size
        return True

    def _search(self, path: str) -> Tuple[Route, PathParams] | None:
        """Return the first route matching ``path`` and what the cache keeps for it (see
        ``Route._match_template``), or None."""
        index = self._index if self._tables is not None else self._current_index()
        size = len(path)
        best_order = sys.maxsize
        best: Tuple[Route, PathParams] | None = None
        for length, table, only, its_candidates in index:
            if length > size:
                continue
            if only is not None:  # one prefix of this length: no slice of the path to look up
                if not path.startswith(only):
                    continue
                candidates = its_candidates
            else:
                found = table.get(path[:length])
                if found is None:
                    continue
                candidates = found
            for order, route in candidates:
                if order >= best_order:
                    break
                template = route._match_template(path)
                if template is not None:
                    best_order = order
                    best = (route, template)
                    break
        return best


class RouteShadowedWarning(UserWarning):
    """A route was registered after one that matches every path it matches: it never runs."""

    def __init__(self, earlier: Route, later: Route) -> None:
        self.earlier = earlier
        self.later = later
        super().__init__(
            f"route {later.path!r} (handler {later.name}) can never match: {earlier.path!r} "
            f"(handler {earlier.name}), registered before it, matches every path it matches"
        )
