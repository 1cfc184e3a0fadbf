"""The deletion request pages: compliance only, form errors for bad input, progress, receipt, dashboard."""
import json
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.deletion import deletion_request_complete, deletion_request_file
from audit.models import AuditEvent, DeletionRequest
from audit.receipts import receipt_document_verify
from syncapp.roles import COMPLIANCE, MARKETER, REVIEWER
from tests.workspace import connection_make, user_with_role

pytestmark = pytest.mark.django_db

ADA = "ada@example.com"


def client_as(role: str | None, username: str = "someone") -> Client:
    client = Client()
    client.force_login(user_with_role(username, role))
    return client


@pytest.fixture
def compliance_client() -> Client:
    return client_as(COMPLIANCE, "carol")


@pytest.fixture
def workspace():
    connection_make("HubSpot", "hubspot", access_token="token-0123456789")
    connection_make("Mailchimp", "mailchimp", api_key="key-0123456789-us1", settings={"list_id": "abc"})


def filed(**fields) -> DeletionRequest:
    values = {"email": ADA, "phone": "", "regulation": "gdpr", "reference": "TICKET-1", "due_date": None,
              "user": None}
    values.update(fields)
    return deletion_request_file(**values)


def form_post(client, **fields):
    data = {"email": ADA, "phone": "", "regulation": "gdpr", "reference": "TICKET-1", "due_date": ""}
    data.update(fields)
    return client.post(reverse("audit:deletion_new"), data)


def all_urls(request_id: int) -> list[str]:
    return [reverse("audit:deletion_list"), reverse("audit:deletion_new"),
            reverse("audit:deletion_detail", args=[request_id]), reverse("audit:deletion_progress", args=[request_id]),
            reverse("audit:deletion_receipt", args=[request_id])]


# Access


def test_the_urls_keep_their_names():
    assert reverse("audit:deletion_list") == "/audit/deletions/"
    assert reverse("audit:deletion_new") == "/audit/deletions/new/"
    assert reverse("audit:deletion_detail", args=[4]) == "/audit/deletions/4/"
    assert reverse("audit:deletion_receipt", args=[4]) == "/audit/deletions/4/receipt.json"


def test_visitors_are_sent_to_log_in(client):
    request = filed()
    for url in all_urls(request.pk):
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith(reverse("login")), url


@pytest.mark.parametrize("role", [None, MARKETER, REVIEWER])
def test_only_compliance_staff_see_or_file_requests(role):
    request = filed()
    client = client_as(role)
    for url in all_urls(request.pk):
        assert client.get(url).status_code == 403, url
    assert form_post(client, email="bob@example.com").status_code == 403
    assert DeletionRequest.objects.count() == 1


def test_the_nav_links_the_requests_for_compliance_only(compliance_client):
    assert 'href="/audit/deletions/"' in compliance_client.get(reverse("dashboard")).content.decode()
    assert 'href="/audit/deletions/"' not in client_as(MARKETER, "mark").get(reverse("dashboard")).content.decode()


# Filing


def test_filing_redirects_to_the_request_and_audits_it(compliance_client, workspace):
    response = form_post(compliance_client, email=" Ada@Example.com ", phone="+1 415 555 0100", regulation="ccpa",
                         reference="T-77")
    request = DeletionRequest.objects.get()
    assert response.status_code == 302 and response.url == reverse("audit:deletion_detail", args=[request.pk])
    assert (request.email, request.phone, request.reference) == (ADA, "+14155550100", "T-77")
    assert request.due_date == timezone.localdate() + timedelta(days=45)
    assert request.requested_by.username == "carol"
    assert request.tasks.count() == 2
    assert AuditEvent.objects.filter(action="deletion.requested", actor=request.requested_by).exists()


def test_the_form_offers_each_regulations_default_due_date(compliance_client):
    page = compliance_client.get(reverse("audit:deletion_new")).content.decode()
    today = timezone.localdate()
    dates = {"gdpr": (today + timedelta(days=30)).isoformat(), "ccpa": (today + timedelta(days=45)).isoformat()}
    assert f'data-due-dates="{json.dumps(dates).replace(chr(34), "&quot;")}"' in page
    assert 'type="date"' in page and "js/deletion-request.js" in page


@pytest.mark.parametrize(("fields", "message"), [
    ({"email": "ada@", "phone": ""}, "This is not an email address"),
    ({"email": "", "phone": "555 0100"}, "international form"),
    ({"email": "", "phone": "1-800-FLOWERS"}, "international form"),
    ({"email": "", "phone": ""}, "Give the person&#x27;s email address, phone number, or both."),
    ({"regulation": "hipaa"}, "Select a valid choice"),
    ({"reference": ""}, "This field is required"),
    ({"reference": "from ada@example.com"}, "must not repeat the email"),
    ({"due_date": "2020-01-01"}, "The due date is in the past"),
    ({"due_date": "tomorrow"}, "Enter a valid date"),
    ({"email": "a" * 400 + "@example.com"}, "at most 320 characters"),
])
def test_bad_input_is_a_form_error_never_a_request(compliance_client, fields, message):
    response = form_post(compliance_client, **fields)
    assert response.status_code == 400
    page = response.content.decode()
    assert message in page and "Nothing was filed" in page
    assert not DeletionRequest.objects.exists()


def test_hostile_and_long_text_is_shown_as_text(compliance_client, hostile_contacts):
    hostile = next(row["firstname"] for row in hostile_contacts if "<script" in row["firstname"])
    requests = [filed(reference=hostile), filed(reference="R" * 200, email="bob@example.com")]
    for url in (reverse("audit:deletion_list"), reverse("dashboard"),
                *(reverse("audit:deletion_detail", args=[request.pk]) for request in requests)):
        page = compliance_client.get(url).content.decode()
        assert hostile not in page, url
    page = compliance_client.get(reverse("audit:deletion_detail", args=[requests[0].pk])).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# Following a request


def test_the_list_shows_status_due_date_and_overdue(compliance_client, workspace):
    late = filed(reference="T-LATE")
    DeletionRequest.objects.filter(pk=late.pk).update(due_date=timezone.localdate() - timedelta(days=2))
    on_time = filed(reference="T-ON-TIME", email="bob@example.com")
    page = compliance_client.get(reverse("audit:deletion_list")).content.decode()
    late_row = page.split(f'data-testid="deletion-{late.pk}"')[1].split("</tr>")[0]
    on_time_row = page.split(f'data-testid="deletion-{on_time.pk}"')[1].split("</tr>")[0]
    assert "Overdue" in late_row and "Overdue" not in on_time_row
    assert "0 of 2" in late_row and "Open" in late_row


def test_an_open_request_shows_its_systems_and_polls_its_progress(compliance_client, workspace):
    request = filed()
    page = compliance_client.get(reverse("audit:deletion_detail", args=[request.pk])).content.decode()
    assert ADA in page and "js/deletion-progress.js" in page
    assert 'data-testid="task-hubspot"' in page and 'data-testid="task-mailchimp"' in page
    assert "Download the receipt" not in page
    progress = compliance_client.get(reverse("audit:deletion_progress", args=[request.pk]))
    assert "no-cache" in progress["Cache-Control"]
    data = progress.json()
    assert (data["status"], data["completed"], data["systems"], data["systems_answered"]) == ("open", False, 2, 0)
    request.tasks.filter(connection_name="HubSpot").update(status="erased")
    assert compliance_client.get(reverse("audit:deletion_progress", args=[request.pk])).json()["version"] != \
        data["version"]


def test_the_receipt_waits_for_every_system(compliance_client, workspace):
    request = filed()
    response = compliance_client.get(reverse("audit:deletion_receipt", args=[request.pk]))
    assert response.status_code == 409 and "every system has answered" in response.json()["error"]


def test_a_completed_request_shows_no_identifier_and_downloads_its_signed_receipt(compliance_client):
    request = deletion_request_complete(request_id=filed(phone="+14155550100").pk)
    page = compliance_client.get(reverse("audit:deletion_detail", args=[request.pk])).content.decode()
    assert ADA not in page and "4155550100" not in page
    assert 'data-testid="receipt-valid"' in page and request.receipt_signature in page
    response = compliance_client.get(reverse("audit:deletion_receipt", args=[request.pk]))
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="deletion-receipt-{request.pk}.json"'
    document = json.loads(response.content)
    assert receipt_document_verify(document)
    assert AuditEvent.objects.filter(action="deletion.receipt_downloaded", object_id=str(request.pk)).exists()


def test_a_receipt_edited_in_the_database_shows_as_such(compliance_client):
    request = deletion_request_complete(request_id=filed().pk)
    receipt = request.receipt
    receipt["hub"]["contacts_erased"] = 5
    DeletionRequest.objects.filter(pk=request.pk).update(receipt=receipt)
    page = compliance_client.get(reverse("audit:deletion_detail", args=[request.pk])).content.decode()
    assert 'data-testid="receipt-invalid"' in page


def test_an_unknown_request_is_404(compliance_client):
    for name in ("audit:deletion_detail", "audit:deletion_progress", "audit:deletion_receipt"):
        assert compliance_client.get(reverse(name, args=[999])).status_code == 404


# Dashboard


def test_the_dashboard_shows_compliance_the_overdue_and_failing_requests(compliance_client, workspace):
    late = filed(reference="T-LATE")
    DeletionRequest.objects.filter(pk=late.pk).update(due_date=timezone.localdate() - timedelta(days=1))
    failing = filed(reference="T-FAILING", email="bob@example.com")
    DeletionRequest.objects.filter(pk=failing.pk).update(status=DeletionRequest.Status.FAILING)
    filed(reference="T-FINE", email="cleo@example.com")
    page = compliance_client.get(reverse("dashboard")).content.decode()
    section = page.split('data-testid="deletion-attention"')[1].split("</section>")[0]
    assert "T-LATE" in section and "T-FAILING" in section and "T-FINE" not in section
    assert "Overdue" in section and "Failing" in section
    assert "Nothing to show here yet" not in page


def test_the_dashboard_says_when_nothing_needs_attention(compliance_client):
    page = compliance_client.get(reverse("dashboard")).content.decode()
    assert "every open request is on time" in page
    marketer_page = client_as(MARKETER, "mark").get(reverse("dashboard")).content.decode()
    assert 'data-testid="deletion-attention"' not in marketer_page
