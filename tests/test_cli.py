"""The `connector` command: its commands, options, messages and exit statuses, run in this process."""

from __future__ import annotations

import json

import pytest

from connector.description.manifest import load
from connector.ops.cli import connector, main
from tests.conftest import DEMO, free_port

COMMANDS = ["serve", "worker", "migrate", "check", "sandbox", "manifest", "reply", "send", "export", "docs"]


def test_the_help_lists_every_command(runner):
    result = runner.invoke(connector, ["--help"])
    assert result.exit_code == 0
    listed = result.output.split("Commands:", 1)[1]
    assert {line.split()[0] for line in listed.splitlines() if line.strip()} == set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_a_help_of_its_own(runner, command):
    result = runner.invoke(connector, [command, "--help"])
    assert result.exit_code == 0 and result.output.startswith(f"Usage: connector {command} [OPTIONS]")


def test_the_help_of_a_command_names_its_options_and_defaults(runner):
    result = runner.invoke(connector, ["reply", "-h"])
    for said in ("--phone", "--message", "--sms-id", "--url", "http://127.0.0.1:8000", "--login", "--api-key"):
        assert said in result.output


def test_an_unknown_command_and_a_missing_option_are_usage_errors_with_status_2(runner):
    unknown = runner.invoke(connector, ["deploy"])
    assert unknown.exit_code == 2 and "No such command 'deploy'" in unknown.stderr
    missing = runner.invoke(connector, ["reply", "--message", "Oui"])
    assert missing.exit_code == 2 and "Missing option '--phone'" in missing.stderr
    not_a_number = runner.invoke(connector, ["serve", "--port", "eighty"])
    assert not_a_number.exit_code == 2 and "'eighty' is not a valid integer" in not_a_number.stderr


def test_connector_check_passes_on_the_shipped_manifest(runner, monkeypatch):
    monkeypatch.delenv("PORT", raising=False)
    result = runner.invoke(connector, ["check"])
    assert result.exit_code == 0, result.output
    shipped = load()
    assert result.stdout.startswith(
        f"ok: {len(shipped.actions)} actions, {len(shipped.searches)} searches, {len(shipped.triggers)} triggers"
    )
    assert len(shipped.actions) >= 11 and len(shipped.searches) >= 3


def test_connector_check_lists_every_bad_setting_and_exits_2(runner, monkeypatch):
    monkeypatch.setenv("ALLMYSMS_FEED_FORMAT", "csv")
    monkeypatch.setenv("CONNECTOR_WORKERS", "zero")
    result = runner.invoke(connector, ["check"])
    assert result.exit_code == 2
    assert "ALLMYSMS_FEED_FORMAT" in result.stderr and "CONNECTOR_WORKERS" in result.stderr
    assert "Traceback" not in result.output


def test_serve_without_an_upstream_and_without_the_sandbox_refuses_to_start(runner, monkeypatch):
    monkeypatch.delenv("ALLMYSMS_BASE_URL", raising=False)
    monkeypatch.setenv("CONNECTOR_SANDBOX", "false")
    result = runner.invoke(connector, ["serve"])
    assert result.exit_code == 2
    assert "ALLMYSMS_BASE_URL is not set" in result.stderr


def test_the_options_of_serve_override_the_environment_and_are_checked_like_it(runner, monkeypatch):
    monkeypatch.setenv("CONNECTOR_SANDBOX", "false")
    result = runner.invoke(connector, ["serve", "--workers", "0"])
    assert result.exit_code == 2 and "CONNECTOR_WORKERS" in result.stderr


def test_the_reply_command_says_what_to_do_when_nothing_answers(runner):
    result = runner.invoke(
        connector, ["reply", "--phone", "0611111111", "--message", "Oui", "--url", f"http://127.0.0.1:{free_port()}"]
    )
    assert result.exit_code == 1
    assert "nothing answers at" in result.stderr and "Traceback" not in result.output


def test_the_manifest_command_prints_the_manifest_as_json(runner):
    result = runner.invoke(connector, ["manifest"])
    assert result.exit_code == 0
    described = json.loads(result.stdout)
    assert described and isinstance(described, dict)


def test_export_lists_the_platforms_and_refuses_an_unknown_one(runner, tmp_path):
    listed = runner.invoke(connector, ["export", "--list"])
    assert listed.exit_code == 0 and "openapi" in listed.stdout and "zapier" in listed.stdout
    unknown = runner.invoke(connector, ["export", "myspace", str(tmp_path)])
    assert unknown.exit_code == 2 and "unknown platform 'myspace'" in unknown.stderr
    nowhere = runner.invoke(connector, ["export", "openapi"])
    assert nowhere.exit_code == 2 and "give the directory to write to" in nowhere.stderr


def test_export_writes_a_platforms_files_for_the_url_given(runner, tmp_path):
    result = runner.invoke(
        connector, ["export", "openapi", str(tmp_path / "out"), "--base-url", "https://sms.example.org"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("wrote ") and "(service at https://sms.example.org)" in result.stdout
    assert any((tmp_path / "out").iterdir())


def test_send_refuses_a_file_without_recipients(runner, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    result = runner.invoke(connector, ["send", "--file", str(empty), "--message", "Hello"])
    assert result.exit_code == 2 and "holds no recipient" in result.stderr


def test_send_goes_through_the_running_service_in_chunks_and_exits_0(runner, api, sandbox, tmp_path):
    path = tmp_path / "recipients.csv"
    path.write_text("0612345601\n0612345602\n0612345603\n", encoding="utf-8")
    result = runner.invoke(
        connector,
        [
            "send",
            "--file",
            str(path),
            "--message",
            "Hello",
            "--chunk-size",
            "2",
            "--url",
            api.url,
            "--login",
            DEMO[0],
            "--api-key",
            DEMO[1],
        ],
    )
    assert result.exit_code == 0, result.output
    assert "done: 3 recipients in 2 chunks" in result.stderr
    assert len(sandbox.state.campaigns("demo")) == 2


def test_main_returns_the_exit_status_for_the_console_script(capsys):
    assert main(["export", "--list"]) == 0
    assert main(["export", "myspace", "out"]) == 2
    assert main(["deploy"]) == 2
    assert main(["--help"]) == 0
    assert "No such command 'deploy'" in capsys.readouterr().err
