"""The consistency check a benchmark prints beside its figures: a figure is void when it fails.

Read from the sandbox's control endpoints (not counted in its request stats), before the
first run and after the last, over the systems the demo's sync holds:
- every valid address held anywhere is held by every system, or has a record error
  that says why not (an address one system refuses);
- the fields the sync maps agree across systems (names both ways, the company from the
  CRM), except where a reviewer holds the field in an open conflict, or where the CRM
  holds nothing (the demo's mappings never overwrite a value with an empty one);
- nobody is subscribed by the sync: whoever is subscribed in a system after the runs
  was so there before, or is new there and had opted out nowhere;
- an opt-out is carried: a person opted out somewhere before the runs and subscribed
  nowhere is opted out in every system holding them after (or refused there).
The caller adds the last: a run with nothing changed writes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from syncapp.engine.identity import InvalidEmail, normalize_email

ACTIVECAMPAIGN_LIST = "1"
ACTIVECAMPAIGN_STATES = {1: "subscribed", 2: "unsubscribed", "1": "subscribed", "2": "unsubscribed"}
OPTED_OUT = frozenset({"unsubscribed", "cleaned"})
# Hub field -> its name in each system: the demo's mappings (syncapp.demo.DEMO_MAPPINGS)
# that a reader can compare as they are stored.
COMPARED = {
    "first_name": {"hubspot": "firstname", "mailchimp": "FNAME", "activecampaign": "firstName"},
    "last_name": {"hubspot": "lastname", "mailchimp": "LNAME", "activecampaign": "lastName"},
    "company": {"hubspot": "company", "mailchimp": "COMPANY", "activecampaign": "COMPANY"},
}
# Fields that flow from the CRM only: an empty value there is never sent over a value held.
FROM_CRM = frozenset({"company"})


@dataclass
class Person:
    values: dict[str, str]
    # "subscribed", "unsubscribed", "cleaned", "pending", "transactional", or "" (no statement).
    consent: str


Snapshot = dict[str, dict[str, Person]]


@dataclass
class Consistency:
    missing: dict[str, int] = field(default_factory=dict)
    missing_explained: dict[str, int] = field(default_factory=dict)
    mismatched: dict[str, int] = field(default_factory=dict)
    resubscribed: int = 0
    opt_outs_lost: int = 0
    compared: int = 0
    samples: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        unexplained = sum(self.missing.values()) - sum(self.missing_explained.values())
        return unexplained == 0 and not self.mismatched and self.resubscribed == 0 and self.opt_outs_lost == 0

    def summary(self) -> str:
        verdict = "passed" if self.passed else "FAILED (the figures beside it are void)"
        missing = ", ".join(f"{system} {count} ({self.missing_explained.get(system, 0)} with a record error)"
                            for system, count in self.missing.items() if count) or "none"
        mismatched = ", ".join(f"{name} {count}" for name, count in self.mismatched.items()) or "none"
        return (f"consistency {verdict}: {self.compared:,} people in every system compared; missing: {missing}; "
                f"mapped fields differing: {mismatched}; re-subscribed: {self.resubscribed}; "
                f"opt-outs not carried: {self.opt_outs_lost}")


def snapshot(sandbox, systems: tuple[str, ...]) -> Snapshot:
    """Read every person each system holds, by normalized address."""
    held: Snapshot = {}
    if "hubspot" in systems:
        held["hubspot"] = _by_email(
            (contact["properties"].get("email"),
             Person({hub: contact["properties"].get(names["hubspot"]) or "" for hub, names in COMPARED.items()},
                    "unsubscribed" if contact["properties"].get("hs_email_optout") == "true" else ""))
            for contact in sandbox.hubspot_contacts() if not contact["archived"]
        )
    if "mailchimp" in systems:
        held["mailchimp"] = _by_email(
            (member["email_address"],
             Person({hub: member["merge_fields"].get(names["mailchimp"]) or "" for hub, names in COMPARED.items()},
                    member["status"]))
            for member in sandbox.mailchimp_members() if member["status"] != "archived"
        )
    if "activecampaign" in systems:
        held["activecampaign"] = _by_email(
            (contact["email"],
             Person({hub: _activecampaign_value(contact, names["activecampaign"]) for hub, names in COMPARED.items()},
                    _activecampaign_status(contact)))
            for contact in sandbox.control("activecampaign", "contacts")["contacts"]
        )
    return held


def check(before: Snapshot, after: Snapshot, *, held_fields: set[tuple[str, str]],
          errors: set[tuple[str, str]]) -> Consistency:
    """Compare the systems after the runs; `held_fields` are (email, hub field) pairs under
    review, `errors` the (system, email) pairs with an unresolved record error."""
    result = Consistency()
    everyone = set().union(*(people.keys() for people in after.values()))
    for system, people in after.items():
        missing = everyone - people.keys()
        result.missing[system] = len(missing)
        result.missing_explained[system] = len({email for email in missing if (system, email) in errors})
    shared = set.intersection(*(set(people) for people in after.values()))
    result.compared = len(shared)
    for email in shared:
        for hub_field in COMPARED:
            if (email, hub_field) in held_fields:
                continue
            values = {system: people[email].values[hub_field] for system, people in after.items()}
            if hub_field in FROM_CRM and "hubspot" in values and not values["hubspot"]:
                continue
            if len(set(values.values())) > 1:
                result.mismatched[hub_field] = result.mismatched.get(hub_field, 0) + 1
                if len(result.samples) < 5:
                    result.samples.append(f"{email} {hub_field}: {values}")
    # Subscribed after the runs: held so before in that system, or new there and opted out
    # nowhere. (A person subscribed in one system and opted out in another before the
    # first run may stay subscribed where they were: the consent rule keeps an explicit
    # opt-in newer than the opt-out, docs/two-way.md. What must never happen is Syncapp
    # subscribing anyone.)
    opted_out = {email for people in before.values() for email, person in people.items()
                 if person.consent in OPTED_OUT}
    for system, people in after.items():
        for email, person in people.items():
            if person.consent != "subscribed":
                continue
            was = before.get(system, {}).get(email)
            if was is not None and was.consent == "subscribed":
                continue
            if was is None and email not in opted_out:
                continue
            result.resubscribed += 1
            if len(result.samples) < 10:
                states = {name: (held[email].consent if email in held else None,
                                 after[name][email].consent if email in after[name] else None)
                          for name, held in before.items()}
                result.samples.append(f"{email} subscribed in {system}; consent before and after: {states}")
    # Opted out somewhere before the runs, subscribed nowhere (no newer opt-in the consent
    # rule could keep): every system holding them after the runs holds them opted out.
    subscribed_before = {email for people in before.values() for email, person in people.items()
                         if person.consent == "subscribed"}
    for email in opted_out - subscribed_before:
        for system, people in after.items():
            person = people.get(email)
            if person is None or person.consent in OPTED_OUT or (system, email) in errors:
                continue
            # HubSpot says nothing of a contact not opted out; elsewhere no statement
            # (off the list) is not a subscription either.
            if person.consent or system == "hubspot":
                result.opt_outs_lost += 1
                if len(result.samples) < 10:
                    result.samples.append(f"{email} opted out before, not in {system} after ({person.consent!r})")
    return result


def _by_email(pairs) -> dict[str, Person]:
    people = {}
    for address, person in pairs:
        try:
            people[normalize_email(address or "")] = person
        except InvalidEmail:
            continue
    return people


def _activecampaign_value(contact: dict[str, Any], name: str) -> str:
    return contact.get(name, (contact.get("fieldValues") or {}).get(name)) or ""


def _activecampaign_status(contact: dict[str, Any]) -> str:
    statuses = [item["status"] for item in contact.get("lists") or [] if str(item["list"]) == ACTIVECAMPAIGN_LIST]
    return ACTIVECAMPAIGN_STATES.get(statuses[0], "") if statuses else ""
