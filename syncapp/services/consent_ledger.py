"""The consent ledger: recording what systems and users state, and the hub's state after.

The engine records a system's statement when that system's state changed since it was
last agreed (a change there, not the echo of Syncapp's own write). Users record
statements from the contact page: an explicit opt-in given outside any system (a signed
form, a phone call) is the one way a person who opted out somewhere is subscribed again
everywhere.
"""
from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from audit.services import audit_record
from syncapp.engine import consent as rule
from syncapp.models import ConsentEvent, Contact, RecordLink

CHANNEL_FIELDS = {ConsentEvent.Channel.EMAIL: "email_consent", ConsentEvent.Channel.SMS: "sms_consent"}
RESTRICTIONS = (rule.UNSUBSCRIBED, rule.CLEANED, rule.TRANSACTIONAL, rule.PENDING)


class InvalidConsentStatement(ValueError):
    """A statement the ledger cannot take (unknown channel or state)."""


def last_opt_out_at(contact_id: int, channel: str = ConsentEvent.Channel.EMAIL) -> datetime | None:
    """Return when the contact's current restriction on `channel` was stated, if recorded."""
    return (
        ConsentEvent.objects.filter(contact_id=contact_id, channel=channel, state__in=RESTRICTIONS)
        .order_by("-occurred_at")
        .values_list("occurred_at", flat=True)
        .first()
    )


def consent_statement_record(
    *, contact: Contact, channel: str, state: str, user, note: str = "", explicit_opt_in: bool = False
) -> ConsentEvent:
    """Record a user's consent statement and apply it to the hub.

    A restriction always applies (the most restrictive state wins). A subscription
    applies over a restriction only when `explicit_opt_in` says the person asked for it;
    it then reaches the systems that can carry an opt-in to an opted-out record
    (Provider.explicit_opt_in_state: Mailchimp asks the person to confirm); the others
    keep their opt-out, as their APIs cannot lift it. The contact's
    links are marked pending so the next run carries the new state out.
    """
    if channel not in CHANNEL_FIELDS:
        raise InvalidConsentStatement(f"{channel!r} is not a consent channel (email, sms).")
    if state not in rule.RESTRICTIVENESS or state == rule.UNKNOWN:
        raise InvalidConsentStatement(f"{state!r} is not a consent state one can record.")
    column = CHANNEL_FIELDS[channel]
    now = timezone.now()
    with transaction.atomic():
        contact = Contact.objects.select_for_update().get(pk=contact.pk)
        previous = getattr(contact, column)
        if explicit_opt_in and state == rule.SUBSCRIBED and previous != rule.CLEANED:
            new_state = rule.SUBSCRIBED
        else:
            explicit_opt_in = False
            new_state = rule.most_restrictive(previous, state)
        setattr(contact, column, new_state)
        fields = [column, "updated_at"]
        if channel == ConsentEvent.Channel.EMAIL:
            contact.email_opt_in_at = now if explicit_opt_in else (
                None if rule.RESTRICTIVENESS[new_state] > rule.RESTRICTIVENESS[rule.SUBSCRIBED] else contact.email_opt_in_at
            )
            fields.append("email_opt_in_at")
        contact.save(update_fields=fields)
        event = ConsentEvent.objects.create(
            contact=contact, channel=channel, state=state, previous_state=previous, hub_state=new_state,
            system="Syncapp", evidence=ConsentEvent.Evidence.USER, occurred_at=now, explicit_opt_in=explicit_opt_in,
            note=note[:300], actor=user,
        )
        if new_state != previous:
            RecordLink.objects.filter(contact=contact, archived=False).update(pending_push=True, updated_at=now)
        audit_record(action="consent.recorded", obj=contact, actor=user, contact_id=contact.pk,
                     changes={column: [previous, new_state], "statement": [None, state],
                              "explicit_opt_in": [None, explicit_opt_in], "note": [None, note[:300]]})
    return event
