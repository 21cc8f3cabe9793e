"""The application factory and the settings it is built from."""

from __future__ import annotations

import pytest

from connector import config, create_app
from connector.description.manifest import load
from connector.errors import ConfigError


def test_the_factory_builds_an_app_from_test_settings(sandbox):
    app = create_app({"ALLMYSMS_BASE_URL": sandbox.url})
    assert app.config["ALLMYSMS_BASE_URL"] == sandbox.url
    assert app.config["MAX_CONTENT_LENGTH"] == config.schema()["properties"]["CONNECTOR_MAX_BODY_BYTES"]["default"]


def test_the_factory_refuses_to_start_without_an_allmysms_url(monkeypatch):
    monkeypatch.delenv("ALLMYSMS_BASE_URL", raising=False)
    with pytest.raises(ConfigError) as caught:
        create_app()
    assert "connector serve" in str(caught.value)


def test_routes_are_exactly_those_the_manifest_describes(app):
    # The console's pages are for people, not the API the manifest describes (test_console.py checks them).
    rules = {rule.rule for rule in app.url_map.iter_rules() if rule.endpoint.partition(".")[0] != "console"}
    manifest = load()
    expected = (
        {a.path for a in manifest.actions}
        | {s.path for s in manifest.searches}
        | {
            "/v1/me",
            "/v1/manifest",
            "/v1/inbound/allmysms/<token>",
            "/v1/inbound/rejected",
            "/v1/events/<event_id>/replay",
            "/v1/sandbox/replies",
            "/openapi.json",
            "/healthz",
            "/readyz",
            "/metrics",
            "/v1/options/contact_lists",
        }
    )
    for trigger in manifest.triggers:
        base = f"/v1/triggers/{trigger.key}"
        expected.add(f"{base}/events")
        if trigger.delivery == "push":
            expected |= {
                f"{base}/subscriptions",
                f"{base}/subscriptions/<subscription_id>",
                f"{base}/subscriptions/<subscription_id>/deliveries",
                f"{base}/subscriptions/<subscription_id>/replay",
            }
    assert rules == expected


def test_settings_default_when_the_environment_is_empty():
    settings = config.load({})
    assert settings["ALLMYSMS_TIMEZONE"] == "Europe/Paris"
    assert settings["CONNECTOR_DEFAULT_COUNTRY"] == "FR"
    assert settings["ALLMYSMS_FEED_FORMAT"] == "json"


def test_settings_are_converted_from_environment_text():
    settings = config.load({"PORT": "9000", "CONNECTOR_SANDBOX": "no", "ALLMYSMS_READ_TIMEOUT": "2.5"})
    assert settings["PORT"] == 9000 and settings["CONNECTOR_SANDBOX"] is False
    assert settings["ALLMYSMS_READ_TIMEOUT"] == 2.5


def test_every_settings_problem_is_listed_at_once():
    with pytest.raises(ConfigError) as caught:
        config.load(
            {
                "PORT": "eighty",
                "ALLMYSMS_FEED_FORMAT": "csv",
                "ALLMYSMS_TIMEZONE": "Mars/Olympus",
                "CONNECTOR_DEFAULT_COUNTRY": "ZZ",
                "CONNECTOR_SANDBOX": "maybe",
                "ALLMYSMS_BASE_URL": "ftp://x",
            }
        )
    problems = caught.value.problems
    assert len(problems) == 6
    assert any(p.startswith("PORT:") for p in problems)
    assert any(p.startswith("ALLMYSMS_TIMEZONE:") and "Mars/Olympus" in p for p in problems)


def test_an_unknown_override_is_refused():
    with pytest.raises(ConfigError) as caught:
        config.load({}, {"ALLMYSMS_BASEURL": "http://x"})
    assert caught.value.problems == ["ALLMYSMS_BASEURL: not a setting this service knows"]


def test_every_generated_section_of_the_readme_and_the_docs_is_current():
    from pathlib import Path

    from connector.ops import docs

    root = Path(__file__).resolve().parent.parent
    manifest, found = load(), set()
    for path in docs.documents(root):
        text = path.read_text(encoding="utf-8")
        found.update(docs.section_names(text))
        assert docs.update_text(text, manifest) == text, f"run `.venv/bin/connector docs`: {path.name} is out of date"
    assert found >= {"actions", "config", "retries", "packages", "modules"}, found


def test_the_readme_test_command_is_the_one_ci_runs():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    command = "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/python -m pytest"
    assert command in (root / "README.md").read_text() and command in (root / ".ci" / "run").read_text()
