import pytest
from django.urls import reverse

from audit.models import AuditEvent
from audit.services import audit_record
from syncapp.roles import COMPLIANCE, MARKETER
from tests.workspace import user_with_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def event():
    return audit_record(
        action="connection.updated", object_type="connection", object_id="7", object_repr="<b>Mailchimp</b>",
        changes={"name": ["<script>alert(1)</script>", "Mailchimp"]},
    )


@pytest.mark.parametrize("superuser", [False, True])
def test_no_one_can_add_change_or_delete_audit_events(client, event, superuser):
    user = user_with_role("root", superuser=True) if superuser else user_with_role("carla", COMPLIANCE, staff=True)
    client.force_login(user)
    change_url = reverse("admin:audit_auditevent_change", args=[event.pk])
    assert client.get(reverse("admin:audit_auditevent_add")).status_code == 403
    assert client.post(change_url, {"action": "forged"}).status_code == 403
    assert client.post(reverse("admin:audit_auditevent_delete", args=[event.pk]), {"post": "yes"}).status_code == 403
    changelist = client.post(
        reverse("admin:audit_auditevent_changelist"), {"action": "delete_selected", "_selected_action": [event.pk]}
    )
    assert changelist.status_code in (200, 302)
    event.refresh_from_db()
    assert event.action == "connection.updated"
    assert AuditEvent.objects.count() == 1


def test_compliance_reads_the_trail_escaped(client, event):
    client.force_login(user_with_role("carla", COMPLIANCE, staff=True))
    listing = client.get(reverse("admin:audit_auditevent_changelist")).content.decode()
    assert "connection.updated" in listing and "<b>Mailchimp</b>" not in listing
    detail = client.get(reverse("admin:audit_auditevent_change", args=[event.pk])).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail
    assert "<script>alert(1)</script>" not in detail
    assert 'name="_save"' not in detail


def test_marketers_do_not_see_the_trail(client, event):
    client.force_login(user_with_role("maria", MARKETER, staff=True))
    assert client.get(reverse("admin:audit_auditevent_changelist")).status_code == 403
