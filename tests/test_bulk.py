"""`connector send`: a CSV file of recipients sent through the running service in chunks, with progress."""

from __future__ import annotations

import io

from connector.ops import bulk
from tests.conftest import DEMO


def write_csv(tmp_path, count: int, header: bool = True):
    path = tmp_path / "recipients.csv"
    lines = ["phone_number,first_name"] if header else []
    lines += [f"06 12 34 {n // 100:02d} {n % 100:02d},Name {n}" for n in range(count)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_csv_file_gives_numbers_and_params_and_its_header_is_skipped(tmp_path):
    recipients = bulk.read_recipients(str(write_csv(tmp_path, 2)))
    assert recipients == [
        {"phone_number": "06 12 34 00 00", "params": ["Name 0"]},
        {"phone_number": "06 12 34 00 01", "params": ["Name 1"]},
    ]


def test_a_bulk_send_goes_in_chunks_and_reports_progress_after_each(api, sandbox, tmp_path):
    recipients = bulk.read_recipients(str(write_csv(tmp_path, 25)))
    out = io.StringIO()
    assert bulk.send(api.url, DEMO, "Hello #param_1#", recipients, chunk_size=10, out=out) == 0
    lines = out.getvalue().splitlines()
    assert [line.split(" ")[0] for line in lines[:3]] == ["10/25", "20/25", "25/25"]
    assert "(40%), chunk 1/3: 10 accepted" in lines[0] and lines[-1] == "done: 25 recipients in 3 chunks"
    assert len(sandbox.state.campaigns("demo")) == 3


def test_running_the_same_send_again_sends_no_chunk_twice(api, sandbox, tmp_path):
    recipients = bulk.read_recipients(str(write_csv(tmp_path, 12)))
    bulk.send(api.url, DEMO, "Hello #param_1#", recipients, chunk_size=5, out=io.StringIO())
    out = io.StringIO()
    assert bulk.send(api.url, DEMO, "Hello #param_1#", recipients, chunk_size=5, out=out) == 0
    assert out.getvalue().count("(already sent: not sent again)") == 3
    assert len(sandbox.state.campaigns("demo")) == 3


def test_a_refused_chunk_stops_the_send_and_says_how_far_it_went(api, sandbox, tmp_path):
    recipients = bulk.read_recipients(str(write_csv(tmp_path, 4))) + ["not a number"]
    out = io.StringIO()
    assert bulk.send(api.url, DEMO, "Hello #param_1#", recipients, chunk_size=4, out=out) == 1
    said = out.getvalue()
    assert "chunk 2/2 refused (422 invalid_input)" in said and "4 of 5 recipients were sent" in said
    assert len(sandbox.state.campaigns("demo")) == 1
