from __future__ import annotations

import tiny_listener

# The public API of tiny-listener 1.2.1, which code written for it imports.
API_1_2 = {
    "__version__",
    "check_coro_func",
    "PathParamsError",
    "EventDataError",
    "depend",
    "ContextAlreadyExists",
    "ContextNotFound",
    "Context",
    "Data",
    "Param",
    "DuplicateListener",
    "get_current_running_listener",
    "ListenerNotFound",
    "Scope",
    "Event",
    "EventAlreadyDone",
    "Depends",
    "is_main_thread",
    "Hook",
    "Listener",
    "EventNotFound",
    "EventAlreadyExists",
    "Route",
    "RouteError",
    "compile_path",
    "import_from_string",
}


def test_all_has_no_duplicates() -> None:
    assert len(tiny_listener.__all__) == len(set(tiny_listener.__all__))


def test_every_name_in_all_exists() -> None:
    missing = [name for name in tiny_listener.__all__ if not hasattr(tiny_listener, name)]
    assert missing == []


def test_all_lists_every_public_name() -> None:
    public = {
        name
        for name, value in vars(tiny_listener).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("tiny_listener")
    }
    assert public - set(tiny_listener.__all__) == set()


def test_the_1_2_api_is_still_exported() -> None:
    assert API_1_2 - set(tiny_listener.__all__) == set()
