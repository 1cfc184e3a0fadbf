"""Realistic seed data for the emulated providers, written straight into the sandbox store.

`POST /_sandbox/seed` names a count per emulator (its `seed_key`: `hubspot_contacts`,
`mailchimp_members`, `activecampaign_contacts`...). The seeder draws one list of
synthetic people (`Person`) and hands each emulator its slice, in registry order, each
slice starting halfway into the previous one: the same people turn up in several
systems (half of the HubSpot contacts are Mailchimp members too, and so on), which is
what a sync has to reconcile. Names come from many scripts, phones in many national
shapes (about 1% garbage), companies in several languages; emails are ASCII and carry a
number never used by an earlier seed of the same store. Each emulator writes its people
its own way (`EmulatedAPI.seed`), untidy where the provider can be.

With `hostile`, the shared hostile records (/work/shared/data/hostile_contacts.json in
development) go to every emulator that takes them (or to those `hostile` names), each
keeping what its provider would hold.
"""
from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .store import Store

if TYPE_CHECKING:
    from .provider import EmulatedAPI

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


@dataclass
class Person:
    firstname: str
    lastname: str
    email: str
    phone: str | None
    company: str | None


class Seeder:
    """Generate people and hand them to the emulators to write."""

    def __init__(self, store: Store, emulators: Sequence[EmulatedAPI], hostile_file: Path | None):
        self.store = store
        self.emulators = [api for api in emulators if api.seed_key]
        self.hostile_file = hostile_file

    def seed(self, counts: dict[str, int], *, hostile: Sequence[str] = (),
             random_seed: int | None = None, first_person: int | None = None) -> dict[str, Any]:
        """Seed `counts[api.seed_key]` records into each emulator, and the hostile records into
        those named in `hostile`; return the emulators' counts, merged.

        People are numbered from `first_person` when given, else from the sandbox's counter.
        """
        rng = random.Random(random_seed)
        hostile_records = self._hostile_records() if hostile else []
        slices, start, previous = [], 0, 0
        for api in self.emulators:
            start += previous // 2
            previous = counts.get(api.seed_key, 0)
            slices.append((api, start, previous))
        total = max((start + count for _, start, count in slices), default=0)
        reply: dict[str, Any] = {}
        with self.store.write() as db:
            first_number = self.store.take(db, "person", total) if total else 1
            if first_person is not None:
                first_number = first_person
            people = [self._person(rng, first_number + index) for index in range(total)]
            for api, start, count in slices:
                reply.update(api.seed(db, rng, people[start:start + count],
                                      hostile_records if api.name in hostile else []))
        return reply

    def _hostile_records(self) -> list[dict[str, Any]]:
        if self.hostile_file is None:
            raise ValueError("the sandbox was started without a hostile records file (--hostile-file)")
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
