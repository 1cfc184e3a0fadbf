"""The registry drives the sandbox: an emulator plugged in is served, seeded, limited, faulted,
inspected and wiped without any other module naming it."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from sandbox.app import SandboxApp, SandboxSettings
from sandbox.errors import ProviderError, gateway_page, json_response
from sandbox.hubspot import HubSpotAPI
from sandbox.limits import RollingWindowLimit
from sandbox.provider import ControlAction, EmulatedAPI, Option, Route, not_negative
from sandbox.registry import EMULATORS


class NoteError(ProviderError):
    def __init__(self, status: int, text: str):
        super().__init__(text)
        self.status, self.text = status, text

    def response(self) -> Response:
        return json_response({"note_error": self.text}, self.status)


class NotesAPI(EmulatedAPI):
    """A provider that keeps notes: the smallest emulator there is."""

    name = "notes"
    label = "Notes"
    prefix = "/notes/v1"
    routes = (Route("GET", "/notes", "list_notes"), Route("POST", "/notes", "add_note", write=True))
    options = (Option("notes_key", "notes-key", "the key Notes accepts"),
               Option("notes_rate_limit", 3, "Notes requests per second", not_negative))
    credential = "notes_key"
    schema = "CREATE TABLE IF NOT EXISTS notes_note (id INTEGER PRIMARY KEY, text TEXT NOT NULL);"
    seed_key = "notes"
    control_actions = (ControlAction("GET", "notes", "control_notes"),)

    def __init__(self, store, settings, oauth):
        super().__init__(store, settings, oauth)
        self.rate = RollingWindowLimit(settings["notes_rate_limit"], window_seconds=1.0, daily_limit=None)
        self.limiters = {"notes_rate_limit": self.rate}

    def install_defaults(self, db) -> None:
        db.execute("INSERT OR IGNORE INTO notes_note (id, text) VALUES (1, 'welcome')")

    def seed(self, db, rng, people, hostile_records):
        db.executemany("INSERT INTO notes_note (text) VALUES (?)", [(person.email,) for person in people])
        return {"notes": len(people), "notes_hostile": len(hostile_records)}

    def authenticate(self, request: Request) -> str:
        if request.headers.get("X-Notes-Key") != self.settings["notes_key"]:
            raise NoteError(401, "bad key")
        return "account"

    @contextmanager
    def admitted(self, account: str, route: Route | None) -> Iterator[dict[str, str]]:
        if not self.rate.admit(account).allowed:
            raise NoteError(429, "slow down")
        yield {}

    def fault_response(self, fault) -> Response:
        return NoteError(fault.status, "injected").response() if fault.status < 502 else gateway_page(fault.status)

    def routing_error(self, status: int) -> Response:
        return NoteError(status, "no such thing").response()

    def internal_error(self) -> Response:
        return NoteError(500, "oops").response()

    def json_body(self, request: Request):
        return request.get_json()

    def list_notes(self, request: Request) -> Response:
        with self.store.read() as db:
            return json_response({"notes": [text for (text,) in db.execute("SELECT text FROM notes_note ORDER BY id")]})

    def add_note(self, request: Request) -> Response:
        with self.store.write() as db:
            db.execute("INSERT INTO notes_note (text) VALUES (?)", (self.json_body(request)["text"],))
        return json_response({}, 201)

    def control_notes(self, body: dict) -> dict:
        with self.store.read() as db:
            return {"count": db.execute("SELECT COUNT(*) FROM notes_note").fetchone()[0]}


@pytest.fixture
def client(tmp_path):
    hostile_file = tmp_path / "hostile.json"
    hostile_file.write_text('[{"email": "x@example.com"}]')
    app = SandboxApp(tmp_path, SandboxSettings((HubSpotAPI, NotesAPI), hostile_file=hostile_file, notes_key="k"))
    return Client(app)


KEY = {"X-Notes-Key": "k"}


def test_a_plugged_in_emulator_is_served_under_its_prefix_through_the_gateway(client):
    assert client.get("/notes/v1/notes", headers=KEY).json == {"notes": ["welcome"]}
    assert client.post("/notes/v1/notes", json={"text": "hello"}, headers=KEY).status_code == 201
    assert client.get("/notes/v1/notes").json == {"note_error": "bad key"}
    assert client.get("/notes/v1/nowhere", headers=KEY).json == {"note_error": "no such thing"}
    stats = client.get("/_sandbox/stats").json
    assert stats["requests"]["notes"] == {"GET /notes": 2, "POST /notes": 1, "GET (no such route)": 1}
    assert stats["writes"] == 1
    assert client.get("/_sandbox/info").json["notes"] == {"base_path": "/notes/v1"}
    assert "/notes/v1" in client.get("/elsewhere").json["error"]


def test_its_seed_key_limits_faults_and_control_actions_come_from_the_registry_entry(client):
    seeded = client.post("/_sandbox/seed", json={"hubspot_contacts": 4, "notes": 6, "hostile": ["notes"]}).json
    assert (seeded["notes"], seeded["notes_hostile"], seeded["hostile_contacts"]) == (6, 1, 0)
    assert client.get("/_sandbox/notes/notes").json == {"count": 7}
    assert client.post("/_sandbox/limits", json={"notes_rate_limit": 1}).json["notes_rate_limit"] == 1
    assert [client.get("/notes/v1/notes", headers=KEY).status_code for _ in range(2)] == [200, 429]
    client.post("/_sandbox/limits", json={"notes_rate_limit": 0})
    assert client.post("/_sandbox/faults",
                       json={"provider": "notes", "rate": 1.0, "statuses": [503]}).status_code == 200
    assert client.get("/notes/v1/notes", headers=KEY).status_code == 503
    assert client.post("/_sandbox/faults", json={"provider": "mailchimp"}).status_code == 400


def test_reset_wipes_its_tables_puts_back_its_defaults_and_restores_its_limits(client):
    client.post("/_sandbox/seed", json={"notes": 5})
    client.post("/_sandbox/limits", json={"notes_rate_limit": 0})
    client.post("/_sandbox/reset")
    assert client.get("/_sandbox/notes/notes").json == {"count": 1}
    assert client.get("/_sandbox/limits").json["notes_rate_limit"] == 3


def test_its_options_are_checked_like_every_others():
    with pytest.raises(ValueError, match="negative"):
        SandboxSettings((NotesAPI,), notes_rate_limit=-1)
    with pytest.raises(ValueError, match="unknown options: hubspot_token"):
        SandboxSettings((NotesAPI,), hubspot_token="t")
    with pytest.raises(ValueError, match="notes_rate_limit must be an integer"):
        SandboxSettings((NotesAPI,), notes_rate_limit="3")


def test_the_registry_lists_each_emulator_once_with_distinct_names_prefixes_keys_and_options():
    for attribute in ("name", "prefix", "seed_key"):
        values = [getattr(api, attribute) for api in EMULATORS]
        assert len(values) == len(set(values)), attribute
    options = [option.name for api in EMULATORS for option in api.options]
    assert len(options) == len(set(options))
    tables = [table for api in EMULATORS for table in api.tables()]
    assert len(tables) == len(set(tables)) and all(table.startswith(api.name) for api in EMULATORS
                                                   for table in api.tables())
