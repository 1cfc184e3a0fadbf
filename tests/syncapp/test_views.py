import re

import pytest
from django.urls import reverse
from django.utils import timezone

from connections.models import Connection
from syncapp.engine.text import clean_text
from syncapp.models import RecordError, SyncRun
from syncapp.roles import COMPLIANCE, MARKETER, REVIEWER
from tests.workspace import PASSWORD, run_make, user_with_role, workspace_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def sync():
    return workspace_make()


@pytest.fixture
def marketer_client(client):
    client.force_login(user_with_role("maria", MARKETER))
    return client


def sync_pages(sync, run):
    return [
        reverse("sync_list"),
        reverse("sync_detail", args=[sync.pk]),
        reverse("run_detail", args=[sync.pk, run.pk]),
        reverse("run_progress", args=[sync.pk, run.pk]),
    ]


def finished_run(sync, **fields):
    now = timezone.now()
    defaults = dict(
        status=SyncRun.Status.SUCCEEDED,
        started_at=now - timezone.timedelta(seconds=12),
        finished_at=now,
        progress_done=120,
        progress_total=120,
        read_count=120,
        created_count=100,
        updated_count=15,
        unchanged_count=5,
        pushed_count=115,
        failed_count=2,
        api_calls={"HubSpot": 2, "Mailchimp": 1},
    )
    defaults.update(fields)
    return run_make(sync, **defaults)


# Access


def test_pages_send_anonymous_visitors_to_the_login_page(client, sync):
    run = finished_run(sync)
    for url in [reverse("dashboard"), *sync_pages(sync, run)]:
        response = client.get(url)
        assert response.status_code == 302
        assert response.url.startswith(reverse("login"))


@pytest.mark.parametrize("role", [None, REVIEWER, COMPLIANCE])
def test_sync_pages_refuse_users_without_the_marketer_role(client, sync, role):
    run = finished_run(sync)
    client.force_login(user_with_role("someone", role))
    for url in sync_pages(sync, run):
        assert client.get(url).status_code == 403
    assert client.post(reverse("sync_run_now", args=[sync.pk])).status_code == 403
    dashboard = client.get(reverse("dashboard"))
    assert dashboard.status_code == 200
    assert "HubSpot to Mailchimp" not in dashboard.content.decode()


def test_superusers_see_the_sync_pages(client, sync):
    run = finished_run(sync)
    client.force_login(user_with_role("root", superuser=True))
    for url in sync_pages(sync, run):
        assert client.get(url).status_code == 200


def test_the_login_form_logs_a_marketer_in_and_lands_on_the_dashboard(client, sync):
    user_with_role("maria", MARKETER)
    response = client.post(reverse("login"), {"username": "maria", "password": PASSWORD}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("dashboard")
    html = response.content.decode()
    assert "maria" in html and "HubSpot to Mailchimp" in html


def test_run_now_only_accepts_post(marketer_client, sync):
    assert marketer_client.get(reverse("sync_run_now", args=[sync.pk])).status_code == 405
    assert not SyncRun.objects.exists()


def test_run_now_needs_the_csrf_token(sync):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(user_with_role("maria", MARKETER))
    assert client.post(reverse("sync_run_now", args=[sync.pk])).status_code == 403
    assert not SyncRun.objects.exists()


# Pages


def test_the_dashboard_lists_syncs_with_their_last_run_and_connections_with_status(marketer_client, sync):
    finished_run(sync)
    Connection.objects.filter(name="Mailchimp").update(status=Connection.Status.NEEDS_REAUTH)
    html = marketer_client.get(reverse("dashboard")).content.decode()
    assert "HubSpot to Mailchimp" in html
    assert "Succeeded" in html
    assert "Needs reauthorization" in html


def test_the_sync_page_shows_endpoints_mappings_runs_and_run_now(marketer_client, sync):
    run = finished_run(sync)
    html = marketer_client.get(reverse("sync_detail", args=[sync.pk])).content.decode()
    assert "FNAME" in html and "firstname" in html
    assert f"#{run.pk}" in html
    assert 'action="{}"'.format(reverse("sync_run_now", args=[sync.pk])) in html
    assert "csrfmiddlewaretoken" in html
    assert re.search(r"<progress[^>]*value=\"100\"", html)
    assert "12.0 s" in html  # the duration
    assert ">3<" in html  # API calls in all


def test_the_sync_page_of_an_unknown_sync_is_404(marketer_client):
    assert marketer_client.get(reverse("sync_detail", args=[999])).status_code == 404


def test_the_progress_json_reports_phase_counts_and_whether_finished(marketer_client, sync):
    run = run_make(
        sync, status=SyncRun.Status.RUNNING, phase="Pushing to Mailchimp", progress_done=250,
        progress_total=1000, read_count=1000, pushed_count=250, started_at=timezone.now(),
    )
    response = marketer_client.get(reverse("run_progress", args=[sync.pk, run.pk]))
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"]
    data = response.json()
    assert data["status"] == "running" and data["finished"] is False
    assert data["phase"] == "Pushing to Mailchimp"
    assert (data["done"], data["total"], data["percent"]) == (250, 1000, 25)
    assert data["counts"]["read"] == 1000 and data["counts"]["pushed"] == 250

    SyncRun.objects.filter(pk=run.pk).update(
        status=SyncRun.Status.SUCCEEDED, progress_done=1000, finished_at=timezone.now()
    )
    data = marketer_client.get(reverse("run_progress", args=[sync.pk, run.pk])).json()
    assert data["finished"] is True and data["percent"] == 100


def test_the_run_page_and_its_progress_show_the_records_suppressed(marketer_client, sync):
    run = run_make(sync, status=SyncRun.Status.SUCCEEDED, read_count=10, suppressed_count=2,
                   started_at=timezone.now(), finished_at=timezone.now())
    page = marketer_client.get(reverse("run_detail", args=[sync.pk, run.pk])).content.decode()
    assert '<dt>Suppressed</dt><dd data-count="suppressed">2</dd>' in page
    assert marketer_client.get(reverse("run_progress", args=[sync.pk, run.pk])).json()["counts"]["suppressed"] == 2


def test_the_run_page_and_its_progress_show_the_echoes_set_aside(marketer_client, sync):
    run = run_make(sync, status=SyncRun.Status.SUCCEEDED, read_count=10, unchanged_count=9, echo_count=8,
                   started_at=timezone.now(), finished_at=timezone.now())
    page = marketer_client.get(reverse("run_detail", args=[sync.pk, run.pk])).content.decode()
    assert '<dt>Echoes</dt><dd data-count="echoes">8</dd>' in page
    assert marketer_client.get(reverse("run_progress", args=[sync.pk, run.pk])).json()["counts"]["echoes"] == 8


def test_the_progress_json_of_a_run_of_another_sync_is_404(marketer_client, sync):
    run = finished_run(sync)
    assert marketer_client.get(reverse("run_progress", args=[sync.pk + 1, run.pk])).status_code == 404


def test_hostile_text_from_external_systems_is_escaped_everywhere(marketer_client, sync, hostile_contacts):
    run = finished_run(sync, error="Run failed: <img src=x onerror=alert(3)>")
    mailchimp = Connection.objects.get(name="Mailchimp")
    for _index, record in enumerate(hostile_contacts):
        RecordError.objects.create(
            run=run, connection=mailchimp, external_id=record["email"],
            # As record_errors_save stores them: cleaned of NUL bytes (PostgreSQL refuses them).
            error_class="invalid_resource", message=clean_text(f"{record['firstname']} {record['lastname']}"),
        )
    Connection.objects.filter(pk=mailchimp.pk).update(last_error='<a href="javascript:alert(2)">click</a>')
    pages = [
        reverse("dashboard"),
        reverse("sync_detail", args=[sync.pk]),
        reverse("run_detail", args=[sync.pk, run.pk]),
    ]
    for url in pages:
        html = marketer_client.get(url).content.decode()
        assert "<script>alert(1)</script>" not in html
        assert '" onmouseover="alert(1)' not in html
        assert '<a href="javascript:alert(2)">' not in html
        assert "<img src=x" not in html
    html = marketer_client.get(reverse("run_detail", args=[sync.pk, run.pk])).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&quot; onmouseover=&quot;alert(1)" in html
    assert "<bdi>Abc\u202efdp.exe" in html  # right-to-left text isolated from the page
    assert "&lt;img src=x onerror=alert(3)&gt;" in html


def test_the_run_page_pages_through_record_errors(marketer_client, sync):
    run = finished_run(sync)
    mailchimp = Connection.objects.get(name="Mailchimp")
    RecordError.objects.bulk_create(
        RecordError(run=run, connection=mailchimp, external_id=f"id-{n}", error_class="invalid", message=f"bad {n}")
        for n in range(60)
    )
    first = marketer_client.get(reverse("run_detail", args=[sync.pk, run.pk])).content.decode()
    assert "id-0<" in first and "id-59<" not in first and "Page 1 of 2" in first
    second = marketer_client.get(reverse("run_detail", args=[sync.pk, run.pk]), {"page": 2}).content.decode()
    assert "id-59<" in second


# Run now


def test_run_now_queues_a_manual_run_and_shows_its_progress(marketer_client, sync, django_capture_on_commit_callbacks):
    from django_q.brokers import get_broker

    # The broker in use (the ORM, or Redis in CI's second run) holds the queued task.
    broker = get_broker()
    queued_before = broker.queue_size()
    with django_capture_on_commit_callbacks(execute=True):
        response = marketer_client.post(reverse("sync_run_now", args=[sync.pk]))
    run = SyncRun.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("sync_detail", args=[sync.pk])
    assert (run.trigger, run.status, run.requested_by.username) == ("manual", "queued", "maria")
    assert broker.queue_size() == queued_before + 1

    html = marketer_client.get(reverse("sync_detail", args=[sync.pk])).content.decode()
    assert f"Run #{run.pk} queued." in html
    assert 'data-finished="false"' in html
    assert reverse("run_progress", args=[sync.pk, run.pk]) in html
    assert re.search(r"<button[^>]*data-run-now[^>]*disabled", html)
    assert 'src="/static/js/run-progress.js"' in html
    assert "<script>" not in html and " onclick=" not in html


def test_run_now_while_a_run_is_under_way_starts_no_second_run(marketer_client, sync):
    active = run_make(sync, status=SyncRun.Status.RUNNING, started_at=timezone.now(), heartbeat_at=timezone.now())
    response = marketer_client.post(reverse("sync_run_now", args=[sync.pk]), follow=True)
    assert SyncRun.objects.count() == 1
    assert f"Run #{active.pk} is already under way" in response.content.decode()


def test_run_now_on_a_paused_sync_explains_why_nothing_runs(marketer_client, sync):
    type(sync).objects.filter(pk=sync.pk).update(paused=True)
    response = marketer_client.post(reverse("sync_run_now", args=[sync.pk]), follow=True)
    assert not SyncRun.objects.exists()
    assert "This sync is paused" in response.content.decode()


@pytest.mark.parametrize(("status", "percent"), [("succeeded", 100), ("partial", 100), ("failed", 40), ("running", 40)])
def test_the_bar_is_full_once_a_run_gets_to_the_end_and_shows_where_others_stopped(sync, status, percent):
    # The final push phase counts accepted records, so refusals leave `done` short of `total`.
    run = run_make(sync, status=status, progress_done=40, progress_total=100)
    assert run.percent == percent
