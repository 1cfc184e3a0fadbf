"""The hash chain: what a row's hash covers, how a walk names a break, and the writers that extend it."""
import importlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.db import connection, transaction

from audit import chain
from audit.models import AuditChainHead, AuditEvent
from audit.services import CHAIN_HEAD_ID, audit_event_build, audit_record, audit_record_many, audit_row_build
from audit.verification import chain_verify
from tests.databases import test_database_url

REPO = Path(__file__).resolve().parent.parent.parent
T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def rows(count: int, *, start: str = chain.GENESIS) -> list[chain.ChainRow]:
    """Build a valid chain of `count` plain rows, ids 1..count."""
    built, prev_hash = [], start
    for row_id in range(1, count + 1):
        changes, object_repr = {"email": [None, f"p{row_id}@example.com"]}, f"p{row_id}@example.com"
        fields = dict(created_at=T0, action="contact.updated", actor_id=None, system="CRM", object_type="contact",
                      object_id=str(row_id), contact_id=row_id, run_id=7)
        digest = chain.changes_digest(changes, object_repr)
        row_hash = chain.row_hash(prev_hash, chain.content(**fields), digest)
        built.append(chain.ChainRow(id=row_id, changes=json.dumps(changes), object_repr=object_repr,
                                    changes_digest=digest, prev_hash=prev_hash, row_hash=row_hash, **fields))
        prev_hash = row_hash
    return built


def walk(chain_rows, erased_by=None) -> chain.ChainWalk:
    return chain.chain_walk(chain_rows, erased_by=erased_by or {})


class TestHashes:
    def test_the_digest_ignores_key_order_and_spacing_but_not_values(self):
        assert chain.changes_digest({"a": [1, 2], "b": "x"}, "r") == chain.changes_digest_of_text(
            '{ "b" : "x", "a": [1,2] }', "r")
        assert chain.changes_digest({"a": [1, 2]}, "r") != chain.changes_digest({"a": [1, 3]}, "r")
        assert chain.changes_digest({"a": [1, 2]}, "r") != chain.changes_digest({"a": [1, 2]}, "s")

    def test_numbers_hash_alike_however_a_database_spells_them(self):
        # What Python writes, and what PostgreSQL's jsonb gives back for it.
        for written, returned in (("1.0", "1.0"), ("1e+20", "100000000000000000000"), ("-0.0", "0.0"),
                                  ("1.5e-07", "0.00000015"), ("1e+300", "1" + "0" * 300)):
            assert chain.canonical_json_text(f'{{"n": {written}}}') == chain.canonical_json_text(f'{{"n": {returned}}}')
        assert chain.canonical_json_text('{"n": 0.1}') != chain.canonical_json_text('{"n": 0.2}')

    def test_non_ascii_and_escaped_text_hash_alike(self):
        assert chain.canonical_json_text('{"name": "Zoë"}') == chain.canonical_json_text('{"name": "Zo\\u00eb"}')

    def test_the_hash_covers_every_hashed_column_and_the_previous_hash(self):
        fields = dict(created_at=T0, action="a", actor_id=1, system="s", object_type="t", object_id="1",
                      contact_id=2, run_id=3)
        base = chain.row_hash("p", chain.content(**fields), "d")
        for name, other in (("created_at", datetime(2026, 3, 1, 9, 30, 0, 1, tzinfo=UTC)), ("action", "b"),
                            ("actor_id", None), ("system", "t"), ("object_type", "u"), ("object_id", "2"),
                            ("contact_id", 5), ("run_id", None)):
            assert chain.row_hash("p", chain.content(**{**fields, name: other}), "d") != base, name
        assert chain.row_hash("q", chain.content(**fields), "d") != base
        assert chain.row_hash("p", chain.content(**fields), "e") != base

    def test_the_scheme_is_part_of_the_hash(self, monkeypatch):
        before = chain.row_hash("p", "c", "d")
        monkeypatch.setattr(chain, "SCHEME", "syncapp-audit-chain-v2")
        assert chain.row_hash("p", "c", "d") != before


class TestWalk:
    def test_an_intact_chain_passes(self):
        result = walk(rows(5))
        assert (result.broken, result.checked, result.last_id) == (None, 5, 5)

    def test_an_edited_column_is_named(self):
        chain_rows = rows(5)
        chain_rows[2] = chain_rows[2]._replace(action="contact.created")
        assert (walk(chain_rows).broken.kind, walk(chain_rows).broken.row_id) == ("altered", 3)

    def test_edited_changes_are_named(self):
        chain_rows = rows(5)
        chain_rows[2] = chain_rows[2]._replace(changes=json.dumps({"email": [None, "forged@example.com"]}))
        broken = walk(chain_rows).broken
        assert (broken.kind, broken.row_id) == ("altered", 3)

    def test_a_deleted_row_is_named_by_the_row_after_it(self):
        chain_rows = rows(5)
        del chain_rows[2]
        broken = walk(chain_rows).broken
        assert (broken.kind, broken.row_id) == ("missing", 4)
        assert "after row 2" in broken.detail

    def test_a_deleted_first_row_is_named(self):
        broken = walk(rows(3)[1:]).broken
        assert (broken.kind, broken.row_id) == ("missing", 2)

    def test_a_row_inserted_with_a_forged_link_is_named(self):
        chain_rows = rows(5)
        forged = chain_rows[2]._replace(id=35, prev_hash="0" * 64, row_hash="1" * 64)
        broken = walk(chain_rows[:3] + [forged] + chain_rows[3:]).broken
        assert (broken.kind, broken.row_id) == ("inserted", 35)

    def test_a_row_inserted_with_a_valid_hash_is_named_by_the_row_after_it(self):
        chain_rows = rows(5)
        # The forger links to row 3 and hashes correctly; row 4 still follows row 3.
        forged_fields = dict(created_at=T0, action="contact.updated", actor_id=None, system="CRM",
                             object_type="contact", object_id="9", contact_id=9, run_id=7)
        digest = chain.changes_digest({}, "")
        forged = chain.ChainRow(id=35, changes="{}", object_repr="", changes_digest=digest,
                                prev_hash=chain_rows[2].row_hash,
                                row_hash=chain.row_hash(chain_rows[2].row_hash, chain.content(**forged_fields), digest),
                                **forged_fields)
        broken = walk(chain_rows[:3] + [forged] + chain_rows[3:]).broken
        assert (broken.kind, broken.row_id) == ("inserted", 35)

    def test_a_changed_link_is_an_alteration(self):
        chain_rows = rows(5)
        chain_rows[2] = chain_rows[2]._replace(prev_hash="0" * 64)
        broken = walk(chain_rows).broken
        assert (broken.kind, broken.row_id) == ("altered", 3)

    def test_a_redaction_counts_only_when_a_later_erasure_lists_it(self):
        chain_rows = rows(5)
        chain_rows[1] = chain_rows[1]._replace(changes=json.dumps(chain.erasure_marker("audit.erased #5")),
                                               object_repr=chain.ERASED_REPR)
        accepted = walk(chain_rows, {2: 5})
        assert (accepted.broken, accepted.redacted) == (None, 1)
        for erased_by in ({}, {2: 1}, {3: 5}):
            broken = walk(chain_rows, erased_by).broken
            assert (broken.kind, broken.row_id) == ("altered", 2)

    def test_a_marker_with_other_values_is_not_a_redaction(self):
        chain_rows = rows(3)
        chain_rows[1] = chain_rows[1]._replace(changes=json.dumps({"_erased": "x", "email": [None, "a@b.c"]}),
                                               object_repr=chain.ERASED_REPR)
        assert walk(chain_rows, {2: 3}).broken.kind == "altered"


@pytest.mark.django_db
class TestWriters:
    def test_every_writer_extends_the_chain_and_the_head(self):
        actor = User.objects.create_user("carla")
        first = audit_record(action="connection.updated", object_type="connection", object_id="1", actor=actor,
                             changes={"name": ["Old", "New"], "ratio": [1.0, 0.5]})
        built = audit_event_build(action="sync.paused", object_type="sync", object_id="2")
        built.save()
        audit_record_many([
            audit_row_build(action="contact.updated", object_type="contact", object_id=str(n), contact_id=n,
                            changes={"first_name": ["Ann", f"Ann {n}"]})
            for n in range(3)
        ] + [audit_event_build(action="contact.pushed", object_type="contact", object_id="9", contact_id=9)])
        created = AuditEvent.objects.bulk_create([audit_event_build(action="x.y", object_type="t", object_id="1")])

        events = list(AuditEvent.objects.order_by("id"))
        assert len(events) == 7 and events[0].pk == first.pk and events[1].pk == built.pk
        assert events[-1].pk == created[0].pk
        assert events[0].prev_hash == chain.GENESIS
        for previous, event in zip(events, events[1:], strict=False):
            assert event.prev_hash == previous.row_hash
        head = AuditChainHead.objects.get(pk=CHAIN_HEAD_ID)
        assert (head.last_hash, head.last_event_id, head.events) == (events[-1].row_hash, events[-1].pk, 7)
        report = chain_verify()
        assert (report.valid, report.checked) == (True, 7)

    def test_the_stored_time_is_the_hashed_one(self):
        event = audit_record(action="a.b", object_type="t", object_id="1")
        stored = AuditEvent.objects.get(pk=event.pk)
        assert stored.created_at == event.created_at
        assert stored.row_hash == chain.row_hash(stored.prev_hash, chain.content_of(stored), stored.changes_digest)

    def test_a_rolled_back_write_leaves_the_chain_as_it_was(self):
        audit_record(action="a.b", object_type="t", object_id="1")
        with pytest.raises(RuntimeError), transaction.atomic():
            audit_record(action="a.c", object_type="t", object_id="2")
            raise RuntimeError
        audit_record(action="a.d", object_type="t", object_id="3")
        assert chain_verify().valid and AuditChainHead.objects.get().events == 2

    def test_a_missing_head_is_created_from_the_start(self):
        AuditChainHead.objects.all().delete()
        event = audit_record(action="a.b", object_type="t", object_id="1")
        assert event.prev_hash == chain.GENESIS
        assert AuditChainHead.objects.get(pk=CHAIN_HEAD_ID).last_event_id == event.pk

    def test_hostile_values_hash_and_verify(self, hostile_contacts):
        for record in hostile_contacts:
            values = {key: value for key, value in record.items() if isinstance(value, str)}
            if connection.vendor == "postgresql":
                # jsonb refuses NUL characters whatever the chain does.
                values = {key: value.replace("\x00", "") for key, value in values.items()}
            audit_record(action="contact.updated", object_type="contact", object_id="1",
                         object_repr=values.get("firstname", "").replace("\x00", ""),
                         changes={key: [None, value] for key, value in values.items()})
        assert chain_verify().valid


@pytest.mark.django_db
def test_0003_chains_the_events_written_before_it_in_id_order():
    migration = importlib.import_module("audit.migrations.0003_chain_existing_events")
    for n in range(3):
        audit_record(action="a.b", object_type="t", object_id=str(n), changes={"n": [None, n]})
    AuditChainHead.objects.all().delete()
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER audit_event_append_only" + (" ON audit_auditevent"
                                                                   if connection.vendor == "postgresql" else ""))
        cursor.execute("UPDATE audit_auditevent SET changes_digest = '', prev_hash = '', row_hash = ''")

    migration.chain_existing(apps, SimpleNamespace(connection=connection))

    head = AuditChainHead.objects.get(pk=CHAIN_HEAD_ID)
    assert (head.events, head.last_event_id) == (3, AuditEvent.objects.order_by("id").last().pk)
    assert chain_verify().valid


WRITER = """
import pathlib
import time
from django.db import transaction
from audit.services import audit_record, audit_record_many, audit_row_build
# A barrier: each says it is ready after its Django setup, then waits for the other,
# however long a loaded machine takes to start them.
pathlib.Path({ready!r}, "{name}").touch()
deadline = time.time() + 60
while len(list(pathlib.Path({ready!r}).iterdir())) < 2 and time.time() < deadline:
    time.sleep(0.01)
# Neither runs more than a few rounds ahead of the other: on a loaded machine one could
# otherwise be scheduled through all its rounds before the other starts, and the test
# would prove nothing about writers at once.
progress = pathlib.Path({ready!r}).parent / "progress"
other = progress / ("two" if "{name}" == "one" else "one")


def rounds_done(path):
    try:
        return int(path.read_text() or 0)
    except (FileNotFoundError, ValueError):
        return 0


for n in range({rounds}):
    while rounds_done(other) < min(n - 3, {rounds}) and time.time() < deadline + 60:
        time.sleep(0.002)
    with transaction.atomic():
        audit_record(action="writer.{name}", object_type="test", object_id=str(n))
        audit_record_many([audit_row_build(action="writer.{name}", object_type="test", object_id=f"{{n}}.{{k}}",
                                           changes={{"k": [None, k]}}) for k in range(3)])
    (progress / "{name}.tmp").write_text(str(n + 1))
    (progress / "{name}.tmp").replace(progress / "{name}")
print("DONE")
"""


@pytest.mark.django_db(transaction=True)
def test_two_processes_writing_at_once_leave_one_valid_chain(tmp_path):
    rounds = 150
    env = {**os.environ, "DATABASE_URL": test_database_url(), "PYTHONUNBUFFERED": "1"}
    # Both start at the same moment, after their Django setup (a barrier of files).
    ready = tmp_path / "ready"
    ready.mkdir()
    (tmp_path / "progress").mkdir()
    writers, logs = [], []
    for name in ("one", "two"):
        log = tmp_path / f"{name}.log"
        logs.append(log)
        with log.open("w") as output:
            code = WRITER.format(ready=str(ready), rounds=rounds, name=name)
            writers.append(subprocess.Popen([sys.executable, str(REPO / "manage.py"), "shell", "-c", code],
                                            cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT))
    for writer, log in zip(writers, logs, strict=True):
        writer.wait(120)
        assert writer.returncode == 0, log.read_text()[-3000:]

    report = chain_verify()
    assert report.valid, report.broken
    assert report.checked == AuditEvent.objects.count() == 2 * rounds * 4
    # They did write at the same time: the chain goes back and forth between them.
    actions = list(AuditEvent.objects.order_by("id").values_list("action", flat=True))
    assert sum(1 for a, b in zip(actions, actions[1:], strict=False) if a != b) > 2
    # Each transaction's four rows are consecutive: nothing came between them.
    for start_index in range(0, len(actions), 4):
        assert len(set(actions[start_index:start_index + 4])) == 1
