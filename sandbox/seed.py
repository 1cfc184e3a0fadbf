"""Realistic seed data for the emulated providers, written straight into the sandbox store.

Seeded HubSpot contacts stand for a portal with years of imports behind it, so some
break the rules the API enforces on writes, on purpose:
- about 1% have a malformed email and 0.5% none at all;
- about 1% are the same person again under another email, with the same name and phone;
- phones come in many national and international shapes, about 1% of them garbage;
- names are drawn from many scripts; about 5% opted out of email (`hs_email_optout`).
What no portal holds, however old, is one address twice: HubSpot refuses a second
contact whose email differs from another's only in letter case, and an opt-out belongs
to the address. So a seeded contact whose address a live contact already holds (a twin
by case in the hostile records, or an address created through the API before the seed)
is refused as the API would refuse it, and listed in the reply; a contact seeded with an
address unsubscribed before reads opted out.
Mailchimp members overlap half of the HubSpot contacts (same addresses, 5% in other
letter case) and carry every member status, merge fields and tags. Mailchimp only ever
holds valid addresses, so none are malformed there.

With `hostile`, the shared hostile records (/work/shared/data/hostile_contacts.json in
development) are inserted into HubSpot verbatim, invalid emails and NUL bytes included.
"""
from __future__ import annotations

import json
import random
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .emails import subscriber_hash
from .mailchimp import LIST_ID, MEMBER_COLUMNS, MergeField, iso_seconds
from .store import Store

YEAR_MS = 365 * 24 * 3600 * 1000

# (share of people, first names, last names); each name is (as written, in ASCII for emails).
NAME_POOLS = (
    (30, [("James", "james"), ("Mary", "mary"), ("Michael", "michael"), ("Jennifer", "jennifer"),
          ("Mary-Jane", "maryjane"), ("Jean-Luc", "jeanluc"), ("Chloé", "chloe"), ("Zoë", "zoe")],
     [("Smith", "smith"), ("Johnson", "johnson"), ("O'Brien", "obrien"), ("D'Angelo", "dangelo"),
      ("van der Berg", "vanderberg"), ("Williams", "williams")]),
    (12, [("José", "jose"), ("María", "maria"), ("Sofía", "sofia"), ("Ángel", "angel")],
     [("García", "garcia"), ("Rodríguez", "rodriguez"), ("Núñez", "nunez"), ("Peña", "pena")]),
    (8, [("Jürgen", "juergen"), ("Françoise", "francoise"), ("Łukasz", "lukasz"), ("Åsa", "asa"),
         ("Çağla", "cagla"), ("Siobhán", "siobhan")],
     [("Müller", "mueller"), ("Lefèvre", "lefevre"), ("Wiśniewski", "wisniewski"), ("Øberg", "oberg"),
      ("Öztürk", "ozturk"), ("Weiß", "weiss")]),
    (6, [("Алексей", "aleksei"), ("Ольга", "olga"), ("Дмитрий", "dmitry")],
     [("Иванов", "ivanov"), ("Смирнова", "smirnova"), ("Кузнецов", "kuznetsov")]),
    (4, [("Γιώργος", "giorgos"), ("Ελένη", "eleni")], [("Παπαδόπουλος", "papadopoulos"), ("Νικολάου", "nikolaou")]),
    (6, [("محمد", "mohammed"), ("فاطمة", "fatima"), ("أحمد", "ahmed")], [("العلي", "alali"), ("حسن", "hassan")]),
    (4, [("דוד", "david"), ("שרה", "sarah")], [("כהן", "cohen"), ("לוי", "levi")]),
    (8, [("伟", "wei"), ("芳", "fang"), ("秀英", "xiuying")], [("王", "wang"), ("李", "li"), ("张", "zhang")]),
    (6, [("翔太", "shota"), ("さくら", "sakura")], [("佐藤", "sato"), ("鈴木", "suzuki")]),
    (5, [("민준", "minjun"), ("서연", "seoyeon")], [("김", "kim"), ("이", "lee")]),
    (6, [("अर्जुन", "arjun"), ("प्रिया", "priya")], [("शर्मा", "sharma"), ("पटेल", "patel")]),
    (3, [("สมชาย", "somchai")], [("ใจดี", "jaidee")]),
    (2, [("Văn An", "vanan"), ("Thị Hương", "thihuong")], [("Nguyễn", "nguyen"), ("Trần", "tran")]),
)
FREE_MAIL = ("gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com", "proton.me", "gmx.de",
             "web.de", "orange.fr", "yandex.ru", "qq.com", "naver.com")
COMPANIES = (("Acme Corp", "acme-corp.com"), ("Globex", "globex.io"), ("Initech", "initech.com"),
             ("Umbrella Health", "umbrella-health.org"), ("Müller & Söhne GmbH", "mueller-soehne.de"),
             ("Société Lumière", "lumiere.fr"), ("株式会社サクラ", "sakura.co.jp"), ("Nordic Fjord AB", "fjord.se"),
             ("Pão de Açúcar Ltda", "paodeacucar.com.br"), ("Wayne Enterprises", "wayne-ent.com"))
JOB_TITLES = ("Marketing Manager", "CEO", "Software Engineer", "Office Manager", "Head of Sales", "Designer",
              "Directrice commerciale", "Einkaufsleiter", "")
LIFECYCLE_STAGES = ("subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer",
                    "evangelist", "other")
LIFECYCLE_WEIGHTS = (30, 35, 10, 5, 5, 12, 1, 2)
CITIES = (("San Francisco", "CA", "94107", "United States"), ("Berlin", "", "10115", "Germany"),
          ("Paris", "", "75002", "France"), ("São Paulo", "SP", "01310-100", "Brazil"),
          ("東京", "", "100-0001", "Japan"), ("London", "", "EC1A 1BB", "United Kingdom"))
MEMBER_STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional", "archived")
MEMBER_STATUS_WEIGHTS = (80, 8, 3, 3, 2, 4)
TAG_NAMES = ("Newsletter", "VIP", "Webinar 2024", "Kunden", "Clients fidèles", "顾客")
HUBSPOT_ONLY_KEYS = {"why"}
HOSTILE_PROPERTY = {"birthday": "date_of_birth"}
# Mailchimp validates phones on the way in, so seeded members only hold ones it accepts.
PHONE_FIELD = MergeField(merge_id=0, tag="PHONE", name="Phone Number", type="phone")


# Addresses looked up per query: SQLite allows 32,766 parameters.
KEYS_PER_QUERY = 10_000


def _email_key(properties: dict[str, str]) -> str | None:
    """Return HubSpot's key for a contact's address: trimmed and lowercased, None without one."""
    return (properties.get("email") or "").strip().lower() or None


def _lookup(db, query: str, keys: list[str]) -> list[tuple]:
    """Run `query` over `keys` a chunk at a time ("{marks}" stands for a chunk's placeholders)."""
    rows: list[tuple] = []
    for start in range(0, len(keys), KEYS_PER_QUERY):
        chunk = keys[start:start + KEYS_PER_QUERY]
        rows += db.execute(query.format(marks=", ".join("?" * len(chunk))), chunk).fetchall()
    return rows


@dataclass
class Person:
    firstname: str
    lastname: str
    email: str
    phone: str | None
    company: str | None


class Seeder:
    """Generate people and write them as HubSpot contacts and Mailchimp members."""

    def __init__(self, store: Store, hostile_file: Path):
        self.store = store
        self.hostile_file = hostile_file

    def seed(self, *, hubspot_contacts: int = 0, mailchimp_members: int = 0, hostile: bool = False,
             random_seed: int | None = None) -> dict[str, int]:
        rng = random.Random(random_seed)
        hostile_records = self._hostile_records() if hostile else []
        with self.store.write() as db:
            (first_number,) = db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM hubspot_contact").fetchone()
            overlap_start = hubspot_contacts // 2 if hubspot_contacts else 0
            people = [self._person(rng, first_number + index)
                      for index in range(max(hubspot_contacts, overlap_start + mailchimp_members))]
            hubspot_rows = self._hubspot_rows(rng, people[:hubspot_contacts])
            hostile_rows = [self._hostile_row(record) for record in hostile_records]
            refused = self._write_hubspot(db, rng, hubspot_rows + hostile_rows)
            members_created = self._write_mailchimp(db, rng, people[overlap_start:overlap_start + mailchimp_members])
        refused_rows = {id(row) for row, _ in refused}
        return {"hubspot_contacts": sum(1 for row in hubspot_rows if id(row) not in refused_rows),
                "hostile_contacts": sum(1 for row in hostile_rows if id(row) not in refused_rows),
                "hubspot_refused": [{"email": _email_key(row), "message": message} for row, message in refused],
                "mailchimp_members": members_created}

    def _hostile_records(self) -> list[dict[str, Any]]:
        try:
            return json.loads(self.hostile_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ValueError(f"cannot read the hostile records from {self.hostile_file}: {error}") from None

    @staticmethod
    def _person(rng: random.Random, number: int) -> Person:
        weights = [pool[0] for pool in NAME_POOLS]
        _, firsts, lasts = rng.choices(NAME_POOLS, weights)[0]
        (first, first_ascii), (last, last_ascii) = rng.choice(firsts), rng.choice(lasts)
        company = rng.choice(COMPANIES) if rng.random() < 0.7 else None
        domain = company[1] if company and rng.random() < 0.4 else rng.choice(FREE_MAIL)
        local = rng.choice((f"{first_ascii}.{last_ascii}{number}", f"{first_ascii[0]}{last_ascii}{number}",
                            f"{first_ascii}_{last_ascii}{number}", f"{last_ascii}.{first_ascii}{number}"))
        return Person(first, last, f"{local}@{domain}",
                      Seeder._phone(rng, number) if rng.random() < 0.6 else None, company[0] if company else None)

    @staticmethod
    def _phone(rng: random.Random, number: int) -> str:
        tail = f"{number % 100:02d}"
        roll = rng.random()
        if roll < 0.01:
            return rng.choice(("n/a", "call me maybe", "555-CALL-NOW", "0"))
        return rng.choice((
            f"+1415555{number % 10000:04d}", f"(415) 555-01{tail}", f"415.555.01{tail}",
            f"+44 20 7946 0{number % 1000:03d}", f"+49 30 {number % 10000000:07d}", f"+33 1 23 45 67 {tail}",
            f"+81 3-1234-{number % 10000:04d}", f"+1 415 555 01{tail} ext. 12",
        ))

    def _hubspot_rows(self, rng: random.Random, people: list[Person]) -> list[dict[str, str]]:
        rows = []
        for index, person in enumerate(people):
            properties = {"firstname": person.firstname, "lastname": person.lastname, "email": person.email}
            roll = rng.random()
            if roll < 0.01:
                properties["email"] = rng.choice((
                    person.email.rsplit(".", 1)[0], person.email.replace("@", "@@"), person.email.replace(".", "..", 1),
                    person.email.replace("@", " at "), person.email.replace("@", " @"),
                ))
            elif roll < 0.015:
                del properties["email"]
            elif roll < 0.025 and index:
                previous = people[index - 1]
                properties.update(firstname=previous.firstname, lastname=previous.lastname)
                person.phone = previous.phone or person.phone
            if person.phone:
                properties["phone"] = person.phone
            if person.company:
                properties["company"] = person.company
                properties["jobtitle"] = rng.choice(JOB_TITLES)
            optout = rng.random()
            if optout < 0.05:
                properties["hs_email_optout"] = "true"
            elif optout < 0.35:
                properties["hs_email_optout"] = "false"
            properties["lifecyclestage"] = rng.choices(LIFECYCLE_STAGES, LIFECYCLE_WEIGHTS)[0]
            if rng.random() < 0.5:
                city, state, postal_code, country = rng.choice(CITIES)
                properties.update(city=city, zip=postal_code, country=country)
                if state:
                    properties["state"] = state
            rows.append({name: value for name, value in properties.items() if value})
        return rows

    @staticmethod
    def _hostile_row(record: dict[str, Any]) -> dict[str, str]:
        return {HOSTILE_PROPERTY.get(name, name): str(value) for name, value in record.items()
                if name not in HUBSPOT_ONLY_KEYS and value is not None}

    def _write_hubspot(self, db, rng: random.Random, rows: list[dict[str, str]]) -> list[tuple[dict[str, str], str]]:
        """Insert `rows` as HubSpot contacts, each address once; return the rows refused, with HubSpot's reason."""
        rows, refused = self._one_per_address(db, rows)
        if not rows:
            return refused
        opted_out = self._opted_out(db, rows)
        for properties in rows:
            if _email_key(properties) in opted_out:
                properties["hs_email_optout"] = "true"
        now_ms = int(time.time() * 1000)
        # Seeded changes happened in the past year, but never before a change the sandbox
        # already handed out: a delta cursor must not miss them.
        start = max(self.store.clock.last_ms + 1, now_ms - YEAR_MS)
        end = max(now_ms, start + len(rows))
        modified = sorted(rng.sample(range(start, end), len(rows)))
        rng.shuffle(modified)
        db.executemany(
            "INSERT INTO hubspot_contact (email_key, properties, created_ms, modified_ms) VALUES (?, ?, ?, ?)",
            [(_email_key(properties), json.dumps(properties, ensure_ascii=False),
              changed - rng.randrange(0, YEAR_MS // 2), changed)
             for properties, changed in zip(rows, modified, strict=True)],
        )
        # Seeded opt-outs hold for their addresses, as the subscriptions API's do.
        db.executemany(
            "INSERT OR IGNORE INTO hubspot_email_optout (email_key, opted_out_ms) VALUES (?, ?)",
            [(_email_key(properties), changed) for properties, changed in zip(rows, modified, strict=True)
             if properties.get("hs_email_optout") == "true" and _email_key(properties)],
        )
        self.store.clock.advance_to(max(modified))
        if refused:
            # A twin within the seed names the contact seeded first, known only now.
            holders = self._holders(db, [_email_key(row) for row, _ in refused])
            refused = [(row, message or f"Contact already exists. Existing ID: {holders[_email_key(row)]}")
                       for row, message in refused]
        return refused

    @staticmethod
    def _one_per_address(db, rows: list[dict[str, str]]) -> tuple[list[dict[str, str]], list[tuple[dict, str]]]:
        """Split `rows` into those HubSpot would take and those it refuses, with the reason ("" when
        the address goes to an earlier row of this seed): an address held already, or blocklisted."""
        keys = sorted({key for key in map(_email_key, rows) if key})
        holders = Seeder._holders(db, keys)
        blocklisted = {key for (key,) in _lookup(
            db, "SELECT email_key FROM hubspot_gdpr_deleted WHERE email_key IN ({marks})", keys)}
        kept, refused, seen = [], [], set()
        for row in rows:
            key = _email_key(row)
            if key in holders:
                refused.append((row, f"Contact already exists. Existing ID: {holders[key]}"))
            elif key in blocklisted:
                refused.append((row, f"Email address {key} was permanently deleted and is blocklisted"))
            elif key in seen:
                refused.append((row, ""))
            else:
                kept.append(row)
                if key:
                    seen.add(key)
        return kept, refused

    @staticmethod
    def _holders(db, keys: list[str]) -> dict[str, int]:
        """Return the id of the live contact holding each of these addresses, where one does."""
        return dict(_lookup(db, "SELECT email_key, MIN(id) FROM hubspot_contact WHERE archived = 0 "
                                "AND email_key IN ({marks}) GROUP BY email_key", keys))

    @staticmethod
    def _opted_out(db, rows: list[dict[str, str]]) -> set[str]:
        """Return the addresses of `rows` that were unsubscribed from all email before the seed."""
        keys = sorted({key for key in map(_email_key, rows) if key})
        return {key for (key,) in _lookup(db, "SELECT email_key FROM hubspot_email_optout WHERE email_key IN ({marks})",
                                          keys)}

    def _write_mailchimp(self, db, rng: random.Random, people: list[Person]) -> int:
        if not people:
            return 0
        tag_ids = {}
        for name in TAG_NAMES:
            db.execute("INSERT OR IGNORE INTO mailchimp_tag (list_id, name) VALUES (?, ?)", (LIST_ID, name))
            (tag_ids[name],) = db.execute("SELECT id FROM mailchimp_tag WHERE list_id = ? AND name = ?",
                                          (LIST_ID, name)).fetchone()
        forgotten = {row[0] for row in db.execute("SELECT id FROM mailchimp_forgotten WHERE list_id = ?", (LIST_ID,))}
        now = int(time.time())
        rows, seen = [], set()
        for person in people:
            email = person.email.title() if rng.random() < 0.05 else person.email
            member_hash = subscriber_hash(email)
            if member_hash in forgotten or member_hash in seen:
                continue
            seen.add(member_hash)
            status = rng.choices(MEMBER_STATUSES, MEMBER_STATUS_WEIGHTS)[0]
            last_changed = now - rng.randrange(60, YEAR_MS // 1000)
            signed_up = iso_seconds(last_changed - rng.randrange(0, YEAR_MS // 1000))
            merge_fields = {"FNAME": person.firstname, "LNAME": person.lastname}
            if person.company:
                merge_fields["COMPANY"] = person.company
            if person.phone and PHONE_FIELD.problem(person.phone) is None:
                merge_fields["PHONE"] = person.phone
            tags = [{"id": tag_ids[name], "name": name, "date_added": signed_up}
                    for name in rng.sample(TAG_NAMES, rng.choice((0, 0, 1, 2)))]
            values = {
                "seq": None, "id": member_hash, "email_address": email, "unique_email_id": secrets.token_hex(5),
                "contact_id": secrets.token_hex(16), "status": status, "email_type": "html",
                "merge_fields": json.dumps(merge_fields, ensure_ascii=False),
                "tags": json.dumps(tags, ensure_ascii=False), "language": "", "vip": int(rng.random() < 0.02),
                "ip_signup": "", "timestamp_signup": signed_up, "ip_opt": "",
                "timestamp_opt": signed_up if status != "pending" else "", "source": "Import",
                "last_changed": last_changed,
            }
            rows.append((LIST_ID, *(values[column] for column in MEMBER_COLUMNS)))
        cursor = db.executemany(
            f"INSERT OR IGNORE INTO mailchimp_member (list_id, {', '.join(MEMBER_COLUMNS)}) "
            f"VALUES (?, {', '.join('?' * len(MEMBER_COLUMNS))})",
            rows,
        )
        return cursor.rowcount
