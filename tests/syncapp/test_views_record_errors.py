"""The run and sync pages count failed records and warnings apart, and label each row."""
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from connections.models import Connection
from syncapp.models import Contact, RecordError, SyncRun
from syncapp.roles import MARKETER
from syncapp.selectors import run_record_error_counts
from tests.workspace import run_make, user_with_role, workspace_make

pytestmark = pytest.mark.django_db

WARNING = RecordError.Severity.WARNING
ERROR = RecordError.Severity.ERROR


@pytest.fixture
def sync():
    return workspace_make()


@pytest.fixture
def marketer_client(client):
    client.force_login(user_with_role("maria", MARKETER))
    return client


@pytest.fixture
def run(sync):
    """A finished run with two failed records and three records that synced without a field."""
    now = timezone.now()
    run = run_make(sync, status=SyncRun.Status.PARTIAL, started_at=now, finished_at=now, read_count=40,
                   pushed_count=38, failed_count=2, warning_count=3, progress_done=40, progress_total=40)
    hubspot = Connection.objects.get(name="HubSpot")
    mailchimp = Connection.objects.get(name="Mailchimp")
    RecordError.objects.bulk_create([
        RecordError(run=run, connection=hubspot, external_id="501", error_class="invalid_email",
                    message="Invalid email 'a..b@example.com': two dots in a row."),
        RecordError(run=run, connection=mailchimp, error_class="Invalid Resource", message="Refused by Mailchimp."),
        *[RecordError(run=run, connection=hubspot, external_id=f"60{n}", error_class="not_imported:phone",
                      severity=WARNING, message=f"phone was not imported: '+1 415 555 010{n} ext. 12' has an "
                                                "extension, which E.164 cannot hold. The rest of the record synced.")
          for n in range(3)],
    ])
    return run


def text(html: str) -> str:
    """The page's text with tags and runs of whitespace collapsed, to read counts as a person does."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_run_page_counts_failed_records_and_warnings_apart(marketer_client, sync, run):
    html = marketer_client.get(reverse("run_detail", args=[sync.pk, run.pk])).content.decode()
    assert re.search(r'data-count="failed">2<', html)
    assert re.search(r'data-count="warnings">3<', html)
    assert "2 errors · 3 warnings" in text(html)
    assert "All (5)" in html and "Errors (2)" in html and "Warnings (3)" in html
    assert html.count('<span class="badge badge-warning">Warning</span>') == 3
    assert html.count('<span class="badge badge-error">Error</span>') == 2
    # Errors first: a record that did not sync matters more than a field left out.
    assert html.index("badge-error\">Error") < html.index("badge-warning\">Warning")


def test_the_pages_count_records_as_the_run_does_not_one_per_field_left_out(marketer_client, sync):
    """A record read without its phone and its birthday, and a contact sent without both, are two warnings."""
    hubspot = Connection.objects.get(name="HubSpot")
    mailchimp = Connection.objects.get(name="Mailchimp")
    ann = Contact.objects.create(email="ann@example.com")
    run = run_make(sync, status=SyncRun.Status.SUCCEEDED, read_count=3, pushed_count=3, warning_count=2,
                   finished_at=timezone.now())
    RecordError.objects.bulk_create([
        *[RecordError(run=run, connection=hubspot, external_id="601", error_class=f"not_imported:{field}",
                      severity=WARNING, message=f"{field} was not imported.") for field in ("phone", "birthday")],
        *[RecordError(run=run, connection=mailchimp, contact=ann, error_class=f"not_sent:{field}",
                      severity=WARNING, message=f"{field} was not sent.") for field in ("phone", "birthday")],
    ])
    assert run_record_error_counts(run=run) == {"error": 0, "warning": run.warning_count}
    html = marketer_client.get(reverse("run_detail", args=[sync.pk, run.pk])).content.decode()
    assert "0 errors · 2 warnings" in text(html)
    assert "Warnings (2)" in html
    # Each field left out is still listed, naming the field.
    assert html.count('<span class="badge badge-warning">Warning</span>') == 4
    assert "0 errors · 2 warnings" in text(marketer_client.get(reverse("sync_detail", args=[sync.pk])).content.decode())


def test_rows_without_a_record_id_count_one_each(sync):
    mailchimp = Connection.objects.get(name="Mailchimp")
    run = run_make(sync, status=SyncRun.Status.PARTIAL, failed_count=2, finished_at=timezone.now())
    RecordError.objects.bulk_create(RecordError(run=run, connection=mailchimp, error_class="Invalid Resource",
                                                message="Refused by Mailchimp.") for _ in range(2))
    assert run_record_error_counts(run=run) == {"error": 2, "warning": 0}


@pytest.mark.parametrize(("severity", "shown", "hidden"), [
    ("warning", ["601", "ext. 12"], ["501", "Refused by Mailchimp"]),
    ("error", ["501", "Refused by Mailchimp"], ["601", "ext. 12"]),
])
def test_the_run_page_filters_errors_or_warnings(marketer_client, sync, run, severity, shown, hidden):
    html = marketer_client.get(reverse("run_detail", args=[sync.pk, run.pk]), {"severity": severity}).content.decode()
    rows = html[html.index('id="record-errors"'):]
    for value in shown:
        assert value in rows
    for value in hidden:
        assert value not in rows
    assert re.search(rf'href="\?severity={severity}#record-errors" aria-current="page"', html)


@pytest.mark.parametrize("severity", ["fatal", "", "<script>", "w" * 10_000])
def test_an_unknown_filter_shows_everything_rather_than_failing(marketer_client, sync, run, severity):
    response = marketer_client.get(reverse("run_detail", args=[sync.pk, run.pk]), {"severity": severity})
    assert response.status_code == 200
    html = response.content.decode()
    assert "501" in html and "601" in html
    assert "<script>" not in html


def test_pages_of_warnings_keep_the_filter(marketer_client, sync, run):
    hubspot = Connection.objects.get(name="HubSpot")
    RecordError.objects.bulk_create(
        RecordError(run=run, connection=hubspot, external_id=f"id-{n}", error_class="not_imported:zip",
                    severity=WARNING, message="zip was not imported.") for n in range(60))
    html = marketer_client.get(reverse("run_detail", args=[sync.pk, run.pk]), {"severity": "warning"}).content.decode()
    assert "Page 1 of 2" in html
    assert "?severity=warning&amp;page=2#record-errors" in html
    second = marketer_client.get(reverse("run_detail", args=[sync.pk, run.pk]),
                                 {"severity": "warning", "page": 2}).content.decode()
    assert "id-59<" in second and "501" not in second[second.index('id="record-errors"'):]


def test_a_run_with_only_warnings_reads_as_succeeded_with_no_errors(marketer_client, sync):
    run = run_make(sync, status=SyncRun.Status.SUCCEEDED, read_count=5, pushed_count=5, warning_count=1,
                   finished_at=timezone.now())
    RecordError.objects.create(run=run, connection=Connection.objects.get(name="HubSpot"), external_id="7",
                               error_class="not_imported:phone", severity=WARNING, message="phone was not imported.")
    html = marketer_client.get(reverse("run_detail", args=[sync.pk, run.pk]), {"severity": "error"}).content.decode()
    assert "Succeeded" in html
    assert "0 errors · 1 warning" in text(html)
    assert "No record errors: every record this run read or wrote synced." in html
    assert 'class="count-failed"' in html and "has-failures" not in html
    assert "count-warnings has-warnings" in html


def test_the_sync_page_counts_them_apart_in_the_panel_the_run_table_and_the_list(marketer_client, sync, run):
    html = marketer_client.get(reverse("sync_detail", args=[sync.pk])).content.decode()
    assert re.search(r'data-count="failed">2<', html) and re.search(r'data-count="warnings">3<', html)
    assert "Record errors and warnings of run" in html
    assert "2 errors · 3 warnings" in text(html)
    table = html[html.index("<th class=\"num\">Warnings</th>"):]
    assert re.search(r'text-danger">2</td>\s*<td class="num text-warning">3</td>', table)
    assert html.count("badge-warning\">Warning") == 3


@pytest.mark.parametrize("page", ["sync_list", "dashboard"])
def test_the_sync_list_and_the_dashboard_show_the_last_runs_warnings(marketer_client, sync, run, page):
    html = marketer_client.get(reverse(page)).content.decode()
    assert '<th class="num">Failed</th><th class="num">Warnings</th>' in html
    assert re.search(r'text-danger">2</td>\s*<td class="num text-warning">3</td>', html)


def test_the_progress_json_reports_warnings_beside_failures(marketer_client, sync, run):
    counts = marketer_client.get(reverse("run_progress", args=[sync.pk, run.pk])).json()["counts"]
    assert (counts["failed"], counts["warnings"]) == (2, 3)


def test_a_long_hostile_warning_is_escaped_and_wraps(marketer_client, sync, run, hostile_contacts):
    long_value = next(row["firstname"] for row in hostile_contacts if row["why"] == "very long value")
    RecordError.objects.create(run=run, connection=Connection.objects.get(name="HubSpot"), external_id="<b>9</b>",
                               error_class="not_imported:<i>x</i>", severity=WARNING,
                               message=f"<script>alert(1)</script> {long_value}")
    html = marketer_client.get(reverse("run_detail", args=[sync.pk, run.pk]), {"severity": "warning"}).content.decode()
    assert "<script>alert(1)</script>" not in html and "<b>9</b>" not in html and "<i>x</i>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert '<td class="error-text"><bdi>&lt;script&gt;' in html
