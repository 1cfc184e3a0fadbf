"""Exports of the filtered trail: streamed with flat memory, formulas neutralised, no secret, audited."""
import csv
import gc
import io
import json
import resource

import pytest
from django.test import Client
from django.urls import reverse

from audit.exports import EXPORTED, HEADER, changes_text, neutralised, without_secrets
from audit.models import AuditEvent
from audit.services import SECRET_PLACEHOLDER
from connections.redaction import REDACTED
from syncapp.engine.text import clean_text
from syncapp.models import Contact
from syncapp.roles import COMPLIANCE
from tests.audit.trail_rows import event, events_insert
from tests.workspace import user_with_role

pytestmark = pytest.mark.django_db

EXPORT_ROWS = 100_000
# Growth of the process's peak memory allowed while streaming them: generous, but far
# below what holding the rows (well over 100 MB of text here) would take.
MAX_GROWTH_MB = 60


@pytest.fixture
def carla():
    return user_with_role("carla", COMPLIANCE)


@pytest.fixture
def compliance(carla) -> Client:
    client = Client()
    client.force_login(carla)
    return client


def export(client: Client, **params):
    response = client.get(reverse("audit:export"), params)
    assert response.status_code == 200, response.content.decode()[:2000]
    assert response.streaming
    return response


def content(response) -> str:
    return b"".join(response.streaming_content).decode("utf-8")


def csv_rows(response) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(content(response), newline="")))


# Cells


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1", '=HYPERLINK("x")'])
def test_cells_a_spreadsheet_would_run_are_neutralised(cell):
    assert neutralised(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["", "Ann", "1990-02-30", " =1", "'=1", "{\"a\": 1}"])
def test_other_cells_are_kept(cell):
    assert neutralised(cell) == cell


def test_values_of_keys_named_like_secrets_never_leave():
    changes = {
        "api_key": [SECRET_PLACEHOLDER, SECRET_PLACEHOLDER],
        "hapikey": [None, "pat-na1-123"],
        "settings": [{"client_secret": "s3cret", "list_id": "abc"}, {"list_id": "abc", "Authorization": "Bearer x"}],
        "first_name": ["Ann", "Anita"],
    }
    assert without_secrets(changes) == {
        "api_key": [SECRET_PLACEHOLDER, SECRET_PLACEHOLDER],
        "hapikey": REDACTED,
        "settings": [{"client_secret": REDACTED, "list_id": "abc"}, {"list_id": "abc", "Authorization": REDACTED}],
        "first_name": ["Ann", "Anita"],
    }


def test_stored_changes_are_written_readable_and_without_secrets():
    assert changes_text('{"first_name": ["Ann", "Anita"]}') == '{"first_name": ["Ann", "Anita"]}'
    assert changes_text('{"first_name": ["Jos\\u00e9", null]}') == '{"first_name": ["José", null]}'
    assert changes_text('{"Refresh_Token" : ["a", "b"], "note": [null, "token: x"]}') == (
        f'{{"Refresh_Token": "{REDACTED}", "note": [null, "token: x"]}}')


# Files


def test_the_csv_holds_the_filtered_events_newest_first_neutralised(compliance, hostile_contacts):
    contact = Contact.objects.create(email="csv1@example.com")
    written = [
        event("contact.updated", contact=contact, object_repr=record["email"], system="HubSpot",
              changes={"first_name": [record.get("lastname", ""), record["firstname"]]})
        for record in hostile_contacts
    ]
    event("sync.paused", changes={"paused": [False, True]})

    rows = csv_rows(export(compliance, format="csv", action="contact.updated"))

    assert [int(row["id"]) for row in rows] == [item.pk for item in reversed(written)]
    by_id = {int(row["id"]): row for row in rows}
    formula = next(item for item in written if item.object_repr == "csv1@example.com")
    assert json.loads(by_id[formula.pk]["changes"]) == {"first_name": ["+1+1", '=HYPERLINK("http://evil.example","x")']}
    tab = next(item for item in written if item.object_repr == "csv2@example.com")
    assert json.loads(by_id[tab.pk]["changes"]) == {"first_name": ["\t=1", "@SUM(A1:A9)"]}
    for row in rows:
        assert not any(value.startswith(("=", "+", "-", "@", "\t", "\r")) for value in row.values())
        assert row["action"] == "contact.updated" and row["system"] == "HubSpot"
        assert row["contact_id"] == str(contact.pk)
    nul = next(item for item in written if item.object_repr == "nul@example.com")
    assert json.loads(by_id[nul.pk]["changes"])["first_name"][1] == clean_text("Nu\x00ll")


def test_a_hostile_object_is_neutralised_in_its_cell(compliance):
    event("contact.updated", object_repr="=cmd|' /C calc'!A0", changes={})
    event("contact.updated", object_repr="-2+3", changes={})
    rows = csv_rows(export(compliance, format="csv"))
    assert [row["object"] for row in rows if row["action"] == "contact.updated"] == ["'-2+3", "'=cmd|' /C calc'!A0"]


def test_the_export_is_audited_before_it_streams_and_names_no_one(compliance, carla):
    ann = Contact.objects.create(email="ann@example.com")
    event("contact.pushed", contact=ann, changes={"first_name": [None, "Ann"]})

    response = export(compliance, format="jsonl", person="ann@example.com", action="contact.pushed")

    audited = AuditEvent.objects.get(action=EXPORTED)
    assert audited.actor == carla
    assert audited.changes["format"] == [None, "jsonl"]
    described = audited.changes["filter"][1]
    assert described["action"] == "contact.pushed"
    assert described["person"] and "ann@example.com" not in json.dumps(audited.changes) + audited.object_repr
    lines = content(response).splitlines()
    assert [json.loads(line)["action"] for line in lines] == ["contact.pushed"]


def test_the_export_stops_at_its_own_event(compliance):
    first = event("sync.paused", changes={})
    rows = csv_rows(export(compliance, format="csv"))
    assert [int(row["id"]) for row in rows] == [first.pk]
    # The second export holds the first one's event, not its own.
    rows = csv_rows(export(compliance, format="csv"))
    assert [row["action"] for row in rows] == [EXPORTED, "sync.paused"]


def test_json_lines_hold_one_event_each_without_secrets(compliance):
    event("connection.updated", object_type="connection", object_id="1", object_repr="HubSpot",
          changes={"access_token": [SECRET_PLACEHOLDER, SECRET_PLACEHOLDER], "webhook_token": ["old", "new"],
                   "name": ["Hub", "HubSpot"]})
    body = content(export(compliance, format="jsonl"))
    (record,) = [json.loads(line) for line in body.splitlines()]
    assert list(record) == list(HEADER)
    assert record["changes"] == {"access_token": [SECRET_PLACEHOLDER, SECRET_PLACEHOLDER],
                                 "webhook_token": REDACTED, "name": ["Hub", "HubSpot"]}
    assert "old" not in body


def test_an_export_that_matches_nothing_is_its_header_alone(compliance):
    event("sync.paused", changes={})
    nothing = {"action": "sync.paused", "since": "2099-01-01"}
    assert content(export(compliance, format="csv", **nothing)) == ",".join(HEADER) + "\r\n"
    assert content(export(compliance, format="jsonl", **nothing)) == ""


def test_the_files_are_attachments_kept_out_of_caches(compliance):
    response = export(compliance, format="csv")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="audit-trail-')
    assert "no-store" in response["Cache-Control"]


@pytest.mark.parametrize(("params", "reason"), [
    ({"format": "xlsx"}, "Choose the export's format: csv or jsonl."),
    ({"format": "csv", "since": "yesterday"}, "Since: Enter a valid date/time."),
    ({"format": "csv", "until": "9999-12-31"}, "Until: Enter a date before 9999-12-31."),
    ({"format": "csv", "person": "nobody@example.com"}, "No contact has or had this email address."),
])
def test_a_bad_export_request_says_why_and_exports_nothing(compliance, params, reason):
    response = compliance.get(reverse("audit:export"), params)
    assert response.status_code == 400
    assert reason in response.content.decode()
    assert not AuditEvent.objects.filter(action=EXPORTED).exists()


# Volume


def test_a_hundred_thousand_rows_stream_with_flat_memory(compliance):
    # About 1.2 KB of changes a row: 120 MB of CSV, which no buffered export could hold
    # within the bound.
    changes = json.dumps({"first_name": ["=" + "a" * 580, "b" * 580]})
    events_insert(EXPORT_ROWS, action="contact.updated", changes_json=changes, object_repr="@someone")
    events_insert(1_000, action="contact.pushed", changes_json="{}")
    response = export(compliance, format="csv", action="contact.updated")
    gc.collect()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux

    rows, size, header = 0, 0, None
    for chunk in response.streaming_content:
        size += len(chunk)
        lines = chunk.count(b"\n")
        if header is None:
            header, lines = chunk, lines - 1
        rows += lines

    growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert header.decode().strip() == ",".join(HEADER)
    assert rows == EXPORT_ROWS
    assert size > 100 * 1024 * 1024
    assert growth_mb < MAX_GROWTH_MB, f"peak memory grew by {growth_mb:.0f} MB while streaming"
