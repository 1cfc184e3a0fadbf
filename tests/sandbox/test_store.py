"""The sandbox's own storage and its clock."""
import threading
import time

from sandbox.app import DATABASE_NAME, SandboxApp, SandboxSettings
from sandbox.hubspot import HubSpotAPI
from sandbox.mailchimp import MailchimpAPI
from sandbox.store import Clock, Store


def test_clock_ticks_strictly_increase_across_threads():
    clock = Clock()
    ticks: list[int] = []

    def take():
        for _ in range(500):
            ticks.append(clock.tick())

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ticks)) == 2000


def test_clock_reserves_consecutive_ranges_and_never_runs_behind_the_wall_clock():
    clock = Clock()
    before = int(time.time() * 1000)
    first = clock.tick(100)
    assert first >= before
    assert clock.tick() >= first + 100
    clock.advance_to(first + 10_000)
    assert clock.tick() > first + 10_000


def test_store_keeps_its_data_in_its_own_file_and_hubspot_restarts_the_clock_after_it(tmp_path):
    app = SandboxApp(tmp_path, SandboxSettings())
    with app.store.write() as db:
        db.execute("INSERT INTO hubspot_contact (email_key, properties, created_ms, modified_ms) "
                   "VALUES ('a@example.com', '{}', 1, ?)", (4_102_444_800_000,))
    app.store.close()
    reopened = SandboxApp(tmp_path, SandboxSettings())
    assert (tmp_path / DATABASE_NAME).is_file()
    assert reopened.store.clock.tick() > 4_102_444_800_000
    with reopened.store.read() as db:
        assert db.execute("SELECT COUNT(*) FROM hubspot_contact").fetchone() == (1,)


def test_the_store_creates_the_tables_of_the_schemas_it_is_given(tmp_path):
    store = Store(tmp_path / "sandbox.sqlite3", [HubSpotAPI.schema])
    with store.read() as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert set(HubSpotAPI.tables()) <= tables
    assert not set(MailchimpAPI.tables()) & tables


def test_counters_hand_out_consecutive_numbers_until_a_wipe(tmp_path):
    store = Store(tmp_path / "sandbox.sqlite3")
    with store.write() as db:
        assert store.take(db, "person", 10) == 1
        assert store.take(db, "person", 5) == 11
        assert store.take(db, "other", 1) == 1
        store.wipe(db, [])
        assert store.take(db, "person", 1) == 1


def test_a_failed_write_is_rolled_back(tmp_path):
    store = Store(tmp_path / "sandbox.sqlite3", [MailchimpAPI.schema])
    try:
        with store.write() as db:
            db.execute("INSERT INTO mailchimp_forgotten (list_id, id) VALUES ('l', 'h')")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    with store.read() as db:
        assert db.execute("SELECT COUNT(*) FROM mailchimp_forgotten").fetchone() == (0,)
