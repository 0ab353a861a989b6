"""How the commands report an exception: one line and a hint when tiny-listener raised it over
a setting, the traceback when the user's code raised it (tiny_listener.devtools.failures)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tiny_listener import Listener
from tiny_listener.devtools.failures import explain, format_user_traceback
from tiny_listener.optional import MissingExtraError
from tiny_listener.workers import bind_socket


def caught(fn: object) -> BaseException:
    try:
        fn()  # type: ignore[operator]
    except BaseException as exc:
        return exc
    raise AssertionError("did not raise")


def test_a_missing_extra_is_its_own_message() -> None:
    exc = MissingExtraError("'redis' is not installed; install it with: pip install 'tiny-listener[redis]'")
    failure = explain(exc)
    assert failure.message("app:x") == f"app:x: {exc}"
    assert not failure.traceback_helps


def test_an_error_tiny_listener_raises_over_a_setting_is_one_line_pointing_at_the_users_line() -> None:
    async def handler() -> None: ...

    def register() -> None:
        Listener().on_event("order/{id:nope}")(handler)  # an unknown convertor: RouteError from the core

    exc = caught(register)
    failure = explain(exc)
    assert not failure.traceback_helps
    assert failure.summary == "RouteError: unknown path convertor 'nope' in route 'order/{id:nope}'"
    line = register.__code__.co_firstlineno + 1
    assert failure.hint == f"see {__file__}, line {line}"
    assert failure.message("app:x").splitlines() == [
        f"app:x: {failure.summary}",
        f"Hint: see {__file__}, line {line}; --log-level debug shows the traceback",
    ]
    assert failure.message("app:x", debug_hint=False).endswith(f"line {line}")


def test_a_port_in_use_says_so_and_hints_at_port() -> None:
    with bind_socket("127.0.0.1", 0, backlog=8) as taken:
        exc = caught(lambda: bind_socket("127.0.0.1", taken.getsockname()[1], backlog=8))
    failure = explain(exc)
    assert failure.summary.startswith("OSError: error while attempting to bind on address ('127.0.0.1', ")
    assert failure.summary.endswith("address already in use")
    assert failure.hint is not None and "--port" in failure.hint


def test_an_error_raised_by_the_users_code_keeps_its_traceback() -> None:
    exc = caught(lambda: json.loads("{bad"))  # raised in the stdlib, called by this file: the user's
    failure = explain(exc)
    assert failure.traceback_helps
    assert failure.hint is None
    assert failure.summary.startswith("JSONDecodeError: Expecting property name")


def test_an_unexpected_error_type_keeps_its_traceback_whoever_raised_it() -> None:
    # A KeyError out of tiny-listener would be a bug, not a setting: its traceback helps.
    failure = explain(KeyError("x"))
    assert failure.traceback_helps


def test_an_app_installed_among_packages_is_still_the_users_code(tmp_path: Path) -> None:
    package = tmp_path / "site-packages-like" / "service"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("def start():\n    raise ValueError('bad value in the app')\n")
    namespace: dict[str, object] = {}
    source = (package / "__init__.py").read_text()
    exec(compile(source, str(package / "__init__.py"), "exec"), namespace)
    exc = caught(namespace["start"])
    assert explain(exc, user_paths=[package]).traceback_helps


def test_format_user_traceback_keeps_an_exception_without_a_traceback() -> None:
    assert format_user_traceback(ValueError("x")) == "ValueError: x\n"


def test_a_listener_without_listen_is_told_where_listen_goes() -> None:
    failure = explain(caught(lambda: asyncio.run(Listener().listen())))
    assert failure.summary == (
        "NotImplementedError: Listener must implement `async def listen(self)` or host a source (add_source)"
    )
    assert failure.hint is not None and "define listen() in your Listener subclass" in failure.hint
    assert not failure.traceback_helps
