"""``app.dependency_overrides`` under a TestClient: direct, nested and in hooks."""

from __future__ import annotations

import pytest

from tiny_listener import Event, depend
from tiny_listener.testing import TestClient

from .apps import NoIntakeApp


async def get_settings() -> dict[str, str]:
    return {"dsn": "postgres://prod"}


async def get_db(settings: dict[str, str] = depend(get_settings)) -> str:
    return f"db({settings['dsn']})"


async def get_repo(db: str = depend(get_db)) -> str:
    return f"repo({db})"


def make_app() -> NoIntakeApp:
    app = NoIntakeApp()

    @app.before_event
    async def audit(event: Event, db: str = depend(get_db)) -> None:
        app.calls.append(f"audit {event.path} with {db}")

    @app.on_event("users:list")
    async def list_users(repo: str = depend(get_repo)) -> str:
        return repo

    return app


async def test_a_dependency_two_levels_down_is_overridden_for_handlers_and_hooks() -> None:
    app = make_app()

    async def fake_settings() -> dict[str, str]:
        return {"dsn": "sqlite://memory"}

    app.dependency_overrides[get_settings] = fake_settings
    async with TestClient(app) as client:
        assert await client.trigger("users:list") == "repo(db(sqlite://memory))"
    assert app.calls == ["audit users:list with db(sqlite://memory)"]


async def test_an_override_in_the_middle_replaces_the_whole_branch_below_it() -> None:
    app = make_app()
    resolved: list[str] = []

    async def fake_db() -> str:
        resolved.append("fake_db")
        return "fake-db"

    async def never_called() -> dict[str, str]:
        raise AssertionError("get_settings is below the overridden get_db")

    app.dependency_overrides[get_db] = fake_db
    app.dependency_overrides[get_settings] = never_called
    async with TestClient(app) as client:
        assert await client.trigger("users:list") == "repo(fake-db)"
    # Cached per context: the hook and the handler share one resolution.
    assert resolved == ["fake_db"]


async def test_an_override_gets_its_own_dependencies_injected() -> None:
    app = make_app()

    async def fake_db(settings: dict[str, str] = depend(get_settings)) -> str:
        return f"fake({settings['dsn']})"

    app.dependency_overrides[get_db] = fake_db
    async with TestClient(app) as client:
        assert await client.trigger("users:list") == "repo(fake(postgres://prod))"


async def test_removing_the_override_restores_the_real_dependency() -> None:
    app = make_app()

    async def fake_db() -> str:
        return "fake-db"

    app.dependency_overrides[get_db] = fake_db
    async with TestClient(app) as client:
        assert await client.trigger("users:list") == "repo(fake-db)"
        del app.dependency_overrides[get_db]
        assert await client.trigger("users:list") == "repo(db(postgres://prod))"


async def test_a_sync_override_is_rejected_with_a_type_error() -> None:
    app = make_app()
    app.dependency_overrides[get_db] = lambda: "fake-db"
    async with TestClient(app) as client:
        with pytest.raises(TypeError, match="coroutine function"):
            await client.trigger("users:list")
