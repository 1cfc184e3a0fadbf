"""The trail's filters: each one alone, their errors, and how an export names them."""
from datetime import UTC, datetime

import pytest

from audit.filters import AuditEventFilter, TrailPageForm
from audit.models import AuditEvent
from audit.people import EMAIL, Person
from syncapp.models import Contact, Sync
from syncapp.roles import COMPLIANCE, MARKETER
from tests.audit.trail_rows import email_change, event, events_insert
from tests.workspace import run_make, user_with_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def carla():
    return user_with_role("carla", COMPLIANCE)


def matched(user, **params) -> list[int]:
    trail = AuditEventFilter(params, queryset=AuditEvent.objects.order_by("-id"), user=user)
    assert trail.is_valid(), trail.errors
    return list(trail.qs.values_list("pk", flat=True))


def errors(user, **params) -> dict[str, list[str]]:
    trail = AuditEventFilter(params, queryset=AuditEvent.objects.all(), user=user)
    assert not trail.is_valid()
    return {name: list(messages) for name, messages in trail.errors.items()}


def at(moment: datetime) -> AuditEvent:
    """An event written at `moment`."""
    events_insert(1, action="sync.paused", created_at=moment)
    return AuditEvent.objects.order_by("-id").first()


def test_by_action_actor_and_connection(carla):
    maria = user_with_role("maria", MARKETER)
    paused = event("sync.paused", actor=maria)
    pulled = event("contact.updated", system="HubSpot")
    event("contact.updated", system="Mailchimp")
    assert matched(carla, action="sync.paused") == [paused.pk]
    assert matched(carla, actor="maria") == [paused.pk]
    assert matched(carla, system="HubSpot") == [pulled.pk]


def test_the_choices_are_what_the_trail_holds(carla):
    event("contact.updated", system="HubSpot")
    event("audit.exported", system="hub")
    trail = AuditEventFilter(None, queryset=AuditEvent.objects.all(), user=carla)
    assert [value for value, _ in trail.form.fields["action"].choices][1:] == ["audit.exported", "contact.updated"]
    assert [value for value, _ in trail.form.fields["system"].choices][1:] == ["HubSpot", "hub"]
    marketers = AuditEventFilter(None, queryset=AuditEvent.objects.all(), user=user_with_role("maria", MARKETER))
    assert [value for value, _ in marketers.form.fields["action"].choices][1:] == ["contact.updated"]


def test_by_sync_its_own_events_and_its_runs(carla):
    sync = Sync.objects.create(name="Newsletter")
    other = Sync.objects.create(name="Other")
    run = run_make(sync)
    other_run = run_make(other)
    edited = event("sync.updated", object_type="sync", object_id=str(sync.pk))
    pulled = event("contact.updated", run_id=run.pk, object_type="contact", object_id="9")
    event("sync.updated", object_type="sync", object_id=str(other.pk))
    event("contact.updated", run_id=other_run.pk, object_type="contact", object_id="9")
    event("connection.updated", object_type="connection", object_id=str(sync.pk))
    assert matched(carla, sync=sync.pk) == [pulled.pk, edited.pk]
    assert matched(carla, run=run.pk) == [pulled.pk]


def test_by_time_a_date_alone_is_the_whole_day(carla):
    before = at(datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC))
    first = at(datetime(2026, 3, 2, 0, 0, tzinfo=UTC))
    last = at(datetime(2026, 3, 2, 23, 59, 59, tzinfo=UTC))
    after = at(datetime(2026, 3, 3, 0, 0, tzinfo=UTC))
    assert matched(carla, since="2026-03-02", until="2026-03-02") == [last.pk, first.pk]
    assert matched(carla, since="2026-03-02 12:00") == [after.pk, last.pk]
    assert matched(carla, until="2026-03-02T00:00") == [before.pk]


def test_by_person_through_their_contacts(carla):
    ann = Contact.objects.create(email="ann@example.com")
    bob = Contact.objects.create(email="bob@example.com")
    opened = event("conflict.opened", contact=ann, changes={"first_name": ["Ann", "Annie"]})
    event("conflict.opened", contact=bob, changes={"first_name": ["Bob", "Rob"]})
    changed = email_change(ann, "ann.lee@example.com")
    assert matched(carla, person="ann@example.com") == [changed.pk, opened.pk]
    assert matched(carla, person="ANN.LEE@example.com") == [changed.pk, opened.pk]


@pytest.mark.parametrize(("params", "field", "message"), [
    ({"since": "2026-13-01"}, "since", "Enter a valid date/time."),
    ({"until": "soon"}, "until", "Enter a valid date/time."),
    ({"until": "9999-12-31"}, "until", "Enter a date before 9999-12-31."),
    ({"person": "nobody@example.com"}, "person", "No contact has or had this email address."),
    ({"person": "+14155550199"}, "person", "No contact has or had this phone number."),
    ({"person": "nodomain@"}, "person", "This email address"),
    ({"actor": "ghost"}, "actor", "No user has this username."),
    ({"system": "Nowhere"}, "system", "Select a valid choice."),
    ({"run": "0"}, "run", "Ensure this value is greater than or equal to 1."),
    ({"run": "1.5"}, "run", "Enter a whole number."),
    ({"sync": "abc"}, "sync", "Select a valid choice."),
])
def test_bad_input_is_a_form_error(carla, params, field, message):
    found = errors(carla, **params)
    assert list(found) == [field]
    assert message in found[field][0]


def test_an_export_names_the_person_by_a_digest(carla):
    ann = Contact.objects.create(email="ann@example.com")
    event("contact.pushed", contact=ann)
    trail = AuditEventFilter({"person": "Ann@Example.com", "action": "", "run": "", "since": "2026-01-01"},
                             queryset=AuditEvent.objects.all(), user=carla)
    assert trail.is_valid()
    assert trail.described() == {"person": Person(EMAIL, "ann@example.com").audit_key(), "since": "2026-01-01"}


def test_a_page_starts_after_or_before_an_id():
    assert TrailPageForm({"after": "10"}).is_valid()
    assert TrailPageForm({"before": "10"}).is_valid()
    assert not TrailPageForm({"after": "10", "before": "3"}).is_valid()
    assert not TrailPageForm({"after": str(2**63)}).is_valid()
