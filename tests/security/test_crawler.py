"""A crawler: every page and every form, as every role, with hostile and boundary input.

It walks every URL pattern (the admin's too), filling path converters with the ids of
real objects and with boundary values (0, -1, 2**63, 10**30, huge strings), probes every
admin list with out-of-range filters, then submits every form it finds on the pages
(parsed from their HTML): once as rendered, then field by field with a sample of hostile
values (the shared hostile records) and boundary values (empty, huge integers, NaN,
1e309, the field sent twice, 10,000 characters, NUL).

Bad input must end in a 4xx, a redirect or a form error: no response may be a 5xx, and
nothing may be logged at ERROR level or with a traceback.
"""
from __future__ import annotations

import io
import ipaddress
import itertools
import logging
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from html.parser import HTMLParser
from urllib.parse import urlencode, urljoin, urlsplit

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.exceptions import Resolver404
from django.urls.resolvers import RegexPattern, RoutePattern
from django.utils import timezone
from django_q.models import Schedule, Task

from audit.deletion import deletion_request_file
from audit.services import audit_record
from connections.providers.base import FieldInfo
from mappings.models import FieldCatalog, FieldMapping
from syncapp.models import Conflict, Contact, DuplicatePair, RecordError, SyncRun
from syncapp.roles import COMPLIANCE, MARKETER, REVIEWER
from tests.syncapp.conflict_rows import conflict_make, contact_make, two_way_make
from tests.workspace import run_make, user_with_role

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "marketer", "reviewer", "compliance", "superuser")
ROLE_GROUPS = {"marketer": MARKETER, "reviewer": REVIEWER, "compliance": COMPLIANCE}

BIG_ID = str(2**63)
HUGE_NUMBER = str(10**30)
LONG_TEXT = "x" * 10_000
# Path values besides real ids: each must be refused with a 404 (or a redirect), never a 500.
BOUNDARY_PATH_VALUES = {
    "int": ["0", "-1", BIG_ID, HUGE_NUMBER],
    "text": ["0", "-1", BIG_ID, HUGE_NUMBER, LONG_TEXT, "%00", "..%2F..%2Fetc"],
}
# Sent in place of one field's value; SENT_TWICE sends the field twice (a list).
SENT_TWICE = object()
BOUNDARY_VALUES = [
    "", "0", "-1", BIG_ID, HUGE_NUMBER, "NaN", "1e309", "-Infinity", LONG_TEXT, "\x00", "nul\x00byte",
    SENT_TWICE, "[]", "null", "99999999", "9999-99-99 25:61", '{"a": [1e309]}', "[" * 5000,
]
# Every one of these for each URL field: hosts that must be refused, text that is no URL.
# None is resolved or reached (see no_outbound_addresses).
URL_VALUES = [
    "http://api.example.com/v3", "http://10.0.0.1/", "http://169.254.169.254/latest", "http://[::1", "https://[]",
    "[]", "javascript:alert(1)", "ftp://127.0.0.1/", "http://127.0.0.1:9/\x00",
]
# Forms whose submission ends the session: crawling on after them would be crawling as a visitor.
SKIPPED_ACTIONS = ("/logout/", "/admin/logout/")
# Probes for each field of a model an admin list shows, by field class.
LIST_PROBES = {
    models.DateTimeField: ["__year=99999999", "__gte=not-a-date", "__month=13"],
    models.DateField: ["__year=99999999", "__day=32"],
    models.IntegerField: [f"={HUGE_NUMBER}", f"__in=1,{BIG_ID}", "__gt=NaN"],
    models.ForeignKey: [f"={HUGE_NUMBER}", f"__in={BIG_ID}", "__isnull=maybe"],
    models.CharField: ["__regex=(", "=nul%00byte"],
    models.TextField: ["__regex=[", "__iregex=*"],
    models.JSONField: ["__contains={}", "__has_key=" + LONG_TEXT],
    models.BooleanField: ["=maybe"],
}
LIST_PARAMETERS = [f"p={HUGE_NUMBER}", "p=-1", "o=99.-x", f"q={LONG_TEXT}", "q=%00", "all=", "e=1"]
# Values tried per field, taken in turn from the pools so that every value gets used: two
# boundary values for each hostile one. A form with many fields (inline rows) gets fewer
# per field, down to one, to stay within its budget of submissions.
VALUES_PER_FIELD = 3
SUBMISSIONS_PER_FORM = 60
# Boundary values per text path parameter (admin object ids), taken in turn from the list.
TEXT_PATH_VALUES_PER_PARAMETER = 3


# -- The objects the pages show ---------------------------------------------------------------------


def world_make(hostile_contacts: list[dict]) -> dict[str, list]:
    """Create one or more of every object a page or an admin list shows; return the ids URLs take."""
    # PostgreSQL text refuses NUL; the forms are still sent NULs.
    names = [record["firstname"] for record in hostile_contacts if "\x00" not in record["firstname"]]
    two_way = two_way_make()
    contacts = [
        contact_make(two_way, f"crawl{index}@example.com", first_name=name, last_name=names[-index - 1],
                     phone=f"+1415555{index:04d}")
        for index, name in enumerate(names[:6])
    ]
    conflicts = [
        conflict_make(two_way, contacts[0]),
        conflict_make(two_way, contacts[1], hub_field="last_name", hubspot=names[2], mailchimp=names[3],
                      age=timedelta(days=8)),
        conflict_make(two_way, contacts[2], status=Conflict.Status.RESOLVED, chosen_value="Anna", reason=names[4]),
    ]
    # Not linked to any system: merging them is decided here, without calling a provider
    # (which, unreachable, would be retried for seconds on every submission).
    twins = [Contact.objects.create(email=f"twin{index}@example.com", first_name=names[index], phone="+14155550199")
             for index in range(2)]
    pair = DuplicatePair.objects.create(contact_a=twins[0], contact_b=twins[1], reason=DuplicatePair.Reason.SAME_PHONE,
                                        detail=names[5])
    now = timezone.now()
    finished = run_make(two_way.sync, status=SyncRun.Status.PARTIAL, failed_count=1, started_at=now,
                        finished_at=now, api_calls={str(two_way.hubspot.pk): 3}, error=names[0])
    queued = run_make(two_way.sync)
    RecordError.objects.create(run=finished, connection=two_way.mailchimp, contact=contacts[5], external_id=names[1],
                               error_class="invalid_email", message=names[2])
    audited = audit_record(action="sync.created", obj=two_way.sync, contact_id=contacts[0].pk,
                           changes={"name": [None, names[3]]})
    Schedule.objects.create(name="crawl", func="syncapp.tasks.run_scheduled_task", args=str(two_way.sync.pk),
                            schedule_type=Schedule.MINUTES, minutes=15)
    Task.objects.create(id="0" * 32, name="crawl-task", func="syncapp.tasks.run_execute_task", args=(queued.pk,),
                        started=now, stopped=now, success=False, result=names[4])
    user_with_role("someone")
    # A deletion request for a person nobody holds; its reference is hostile text.
    deletion_request = deletion_request_file(email="crawl-erased@example.com", phone=None, regulation="gdpr",
                                             reference=names[5][:200], due_date=None, user=None)
    # Discovered fields with hostile labels and options, for the mapping editor and its form.
    FieldCatalog.objects.create(connection=two_way.mailchimp, refreshed_at=now, fields=[
        FieldInfo(f"F{index}", name, "dropdown", "enum", options=(name, LONG_TEXT)).as_dict()
        for index, name in enumerate(names[:6])
    ])
    return {
        "sync_id": [two_way.sync.pk],
        "run_id": [finished.pk, queued.pk],
        "runs": [(run.sync_id, run.pk) for run in (finished, queued)],
        "connection_id": [two_way.hubspot.pk, two_way.mailchimp.pk],
        "contact_id": [contact.pk for contact in contacts[:3]],
        "conflict_id": [conflict.pk for conflict in conflicts],
        "pair_id": [pair.pk],
        "mapping_id": list(FieldMapping.objects.filter(sync=two_way.sync).values_list("pk", flat=True)[:2]),
        "event_id": [audited.pk],
        "request_id": [deletion_request.pk],
    }


# -- URL patterns ------------------------------------------------------------------------------------

PLACEHOLDER = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")
NAMED_GROUP = re.compile(r"\(\?P<(?P<name>\w+)>[^)]*\)")


@dataclass(frozen=True)
class Route:
    """A URL pattern as a template: its path with `<converter:name>` placeholders."""

    template: str
    pattern: URLPattern

    @property
    def parameters(self) -> list[tuple[str, str]]:
        return [(match["name"], match["converter"] or "str") for match in PLACEHOLDER.finditer(self.template)]

    def fill(self, values: dict[str, str]) -> str:
        return "/" + PLACEHOLDER.sub(lambda match: values[match["name"]], self.template)


def _template(pattern) -> str:
    if isinstance(pattern, RoutePattern):
        return str(pattern)
    assert isinstance(pattern, RegexPattern), pattern
    # The admin's few regular expressions: named groups become placeholders.
    return NAMED_GROUP.sub(lambda match: f"<re:{match['name']}>", str(pattern).lstrip("^").rstrip("$"))


def routes(resolver: URLResolver | None = None, prefix: str = "") -> Iterator[Route]:
    """Every URL pattern of the project, the included ones too."""
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        template = prefix + _template(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from routes(entry, template)
        else:
            yield Route(template, entry)


def _admin_model(route: Route) -> type[models.Model] | None:
    model_admin = getattr(route.pattern.callback, "model_admin", None)
    return model_admin.model if model_admin else None


def real_values(route: Route, world: dict[str, list]) -> list[dict[str, str]]:
    """The parameters of `route` filled with ids of real objects (one combination per object)."""
    names = [name for name, _ in route.parameters]
    if not names:
        return [{}]
    if set(names) == {"sync_id", "run_id"}:
        return [{"sync_id": str(sync_id), "run_id": str(run_id)} for sync_id, run_id in world["runs"]]
    choices = {}
    for name in names:
        if name == "object_id" and _admin_model(route):
            model = _admin_model(route)
            choices[name] = [str(pk) for pk in model._default_manager.values_list("pk", flat=True)[:2]]
        elif name == "object_id":
            # The admin's "view on site" link: a content type and an object of it.
            choices[name] = [str(world["run_id"][0])]
        elif name == "id":
            # A user's password form in the admin.
            choices[name] = [str(pk) for pk in User.objects.values_list("pk", flat=True)[:2]]
        elif name == "app_label":
            choices[name] = sorted({model._meta.app_label for model in admin.site._registry})
        elif name == "content_type_id":
            choices[name] = [str(ContentType.objects.get_for_model(SyncRun).pk)]
        elif name == "url":
            choices[name] = ["nowhere/"]
        else:
            assert name in world, f"no real values for <{name}> in {route.template}: add them to world_make"
            choices[name] = [str(value) for value in world[name]]
    return [dict(zip(names, combination, strict=True))
            for combination in itertools.product(*(choices[n] for n in names))]


def urls_to_visit(world: dict[str, list]) -> Iterator[tuple[str, Route, bool]]:
    """Yield (url, route, is_real): each route with real ids, then with one boundary value at a time.

    Number parameters get every boundary value; text ones (the admin's object ids, many
    routes alike) a few, in turn.
    """
    text_values = itertools.cycle(BOUNDARY_PATH_VALUES["text"])
    for route in routes():
        filled = real_values(route, world)
        for values in filled:
            yield route.fill(values), route, True
        for name, converter in route.parameters:
            if converter in ("int", "id"):
                boundaries = BOUNDARY_PATH_VALUES["int"]
            else:
                boundaries = [next(text_values) for _ in range(TEXT_PATH_VALUES_PER_PARAMETER)]
            for boundary in boundaries:
                yield route.fill({**(filled[0] if filled else {}), name: boundary}), route, False


def admin_list_probes(model_admin: admin.ModelAdmin, request) -> Iterator[str]:
    """Query strings an admin list must survive: out-of-range filters on each field it lets be filtered."""
    for model_field in model_admin.model._meta.concrete_fields:
        for field_class, probes in LIST_PROBES.items():
            if isinstance(model_field, field_class):
                for probe in probes:
                    lookup, _, value = f"{model_field.name}{probe}".partition("=")
                    # Lookups the admin refuses (a user's password) are a security event by design.
                    if model_admin.lookup_allowed(lookup, value, request):
                        yield f"{lookup}={value}"
                break
    yield from LIST_PARAMETERS


# -- Forms -------------------------------------------------------------------------------------------


@dataclass
class FormField:
    name: str
    kind: str
    value: str = ""
    checked: bool = False
    options: list[tuple[str, bool]] = field(default_factory=list)
    multiple: bool = False


@dataclass
class Form:
    page: str
    action: str
    method: str
    fields: list[FormField] = field(default_factory=list)

    def baseline(self) -> dict[str, list[str]]:
        """The values a user who changes nothing would submit."""
        data: dict[str, list[str]] = {}
        for entry in self.fields:
            if entry.kind in ("checkbox", "radio"):
                if entry.checked or (entry.kind == "radio" and entry.name not in data):
                    data[entry.name] = [entry.value or "on"]
            elif entry.kind == "select":
                chosen = [value for value, selected in entry.options if selected]
                if not chosen and not entry.multiple:
                    chosen = [next((value for value, _ in entry.options if value), "")]
                data.setdefault(entry.name, []).extend(chosen)
            else:
                data.setdefault(entry.name, []).append(entry.value)
        return data

    def mutable_names(self) -> list[str]:
        """Field names to vary: the first row of each inline formset stands for the others."""
        seen, names = set(), []
        for entry in self.fields:
            shape = re.sub(r"-\d+-", "-N-", entry.name)
            if entry.name != "csrfmiddlewaretoken" and shape not in seen:
                seen.add(shape)
                names.append(entry.name)
        return names


class FormParser(HTMLParser):
    """Collect the forms of a page with their inputs, selects and textareas."""

    IGNORED_INPUTS = ("submit", "button", "image", "reset", "file")

    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.page = page
        self.forms: list[Form] = []
        self._form: Form | None = None
        self._select: FormField | None = None
        self._option: list | None = None
        self._textarea: FormField | None = None

    def handle_starttag(self, tag, attrs):
        attributes = {name: value if value is not None else "" for name, value in attrs}
        if tag == "form":
            self._form = Form(page=self.page, action=urljoin(self.page, attributes.get("action") or self.page),
                              method=attributes.get("method", "get").lower())
            self.forms.append(self._form)
        elif self._form is None or ("name" not in attributes and tag != "option"):
            return
        elif tag == "input":
            kind = attributes.get("type", "text").lower()
            if kind not in self.IGNORED_INPUTS:
                self._form.fields.append(FormField(attributes["name"], kind, attributes.get("value", ""),
                                                   checked="checked" in attributes))
        elif tag == "select":
            self._select = FormField(attributes["name"], "select", multiple="multiple" in attributes)
            self._form.fields.append(self._select)
        elif tag == "option" and self._select is not None:
            self._close_option()
            self._option = [attributes.get("value"), "selected" in attributes, ""]
        elif tag == "textarea":
            self._textarea = FormField(attributes["name"], "textarea")
            self._form.fields.append(self._textarea)

    def handle_data(self, data):
        if self._textarea is not None:
            self._textarea.value += data
        elif self._option is not None:
            self._option[2] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        elif tag in ("option", "select"):
            self._close_option()
            if tag == "select":
                self._select = None
        elif tag == "textarea":
            self._textarea = None

    def _close_option(self):
        if self._option is not None and self._select is not None:
            value, selected, text = self._option
            self._select.options.append((value if value is not None else text.strip(), selected))
        self._option = None


def forms_on(page: str, html: str) -> list[Form]:
    parser = FormParser(page)
    parser.feed(html)
    parser.close()
    return parser.forms


def _looks_numeric(form: Form, name: str) -> bool:
    entries = [entry for entry in form.fields if entry.name == name]
    return any(
        entry.kind == "number" or entry.value.isdigit() or any(value.isdigit() for value, _ in entry.options)
        for entry in entries
    )


def _looks_like_url(form: Form, name: str) -> bool:
    return name.endswith("url") or any(entry.kind == "url" for entry in form.fields if entry.name == name)


# -- The crawl ---------------------------------------------------------------------------------------


class Crawl:
    """A client as one role that records every 5xx, every error logged and every traceback printed."""

    def __init__(self, client: Client, caplog, printed: io.StringIO, hostile_values: list[str]):
        self.client = client
        self.caplog = caplog
        self.printed = printed
        self.failures: list[str] = []
        self.requests = 0
        self._boundary = itertools.cycle(BOUNDARY_VALUES)
        self._hostile = itertools.cycle(hostile_values)
        self._turn = itertools.cycle(range(3))

    def get(self, url: str, query: dict | str | None = None):
        if isinstance(query, dict):
            query = urlencode(query, doseq=True)
        target = f"{url}?{query}" if query else url
        return self._checked(f"GET {target[:300]}", lambda: self.client.get(target))

    def post(self, url: str, data: dict):
        return self._checked(f"POST {url} {_shown(data)}", lambda: self.client.post(url, data))

    def _checked(self, what: str, send):
        logged, printed = len(self.caplog.records), len(self.printed.getvalue())
        response = send()
        self.requests += 1
        if response.status_code >= 500:
            self.failures.append(f"{response.status_code} on {what}")
        for record in self.caplog.records[logged:]:
            if record.levelno >= logging.ERROR:
                self.failures.append(f"{record.levelname} {record.name} on {what}: {record.getMessage()[:200]}")
        if "Traceback (most recent call last)" in self.printed.getvalue()[printed:]:
            self.failures.append(f"a traceback printed on {what}")
        return response

    def values_for(self, form: Form, name: str, count: int) -> list:
        """A sample of `count` boundary and hostile values for one field; a huge id for id-like fields."""
        values = [next(self._hostile) if next(self._turn) == 2 else next(self._boundary) for _ in range(count)]
        if _looks_numeric(form, name):
            values.append(HUGE_NUMBER)
        if _looks_like_url(form, name):
            values += URL_VALUES
        return values

    def submit(self, form: Form) -> None:
        """Submit `form` as rendered, then with each field replaced in turn by sampled values."""
        baseline = form.baseline()
        send = self.post if form.method == "post" else self.get
        send(form.action, baseline)
        names = form.mutable_names()
        count = max(1, min(VALUES_PER_FIELD, SUBMISSIONS_PER_FORM // max(1, len(names))))
        for name in names:
            for value in self.values_for(form, name, count):
                current = baseline.get(name) or [""]
                send(form.action, {**baseline, name: [current[0], "x"] if value is SENT_TWICE else [value]})


def _shown(data: dict) -> str:
    return repr({name: [value[:40] for value in values] for name, values in data.items()})[:300]


def _form_key(form: Form) -> tuple:
    """Forms of the same view with the same fields are submitted once."""
    path = urlsplit(form.action).path
    try:
        view = resolve(path).view_name
    except Resolver404:
        view = path
    return form.method, view, tuple(sorted({re.sub(r"-\d+-", "-N-", entry.name) for entry in form.fields}))


def _is_deletion(form: Form) -> bool:
    return "/delete/" in urlsplit(form.action).path


def _log_in(client: Client, role: str) -> None:
    if role != "anonymous":
        client.force_login(user_with_role(role, ROLE_GROUPS.get(role), staff=True, superuser=role == "superuser"))


@pytest.fixture
def no_outbound_addresses(monkeypatch):
    """Let nothing the crawl submits resolve or reach a host other than loopback.

    Hostile values land in URL fields; the crawl must not send a DNS query or a request
    anywhere, so every lookup of another name fails as an unknown host would.
    """
    resolve_host = socket.getaddrinfo

    def loopback_only(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else str(host)
        try:
            allowed = ipaddress.ip_address(name.strip("[]")).is_loopback
        except ValueError:
            allowed = name == "localhost"
        if not allowed:
            raise socket.gaierror(socket.EAI_NONAME, f"the crawl resolves no name but loopback: {name[:60]}")
        return resolve_host(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)


@pytest.mark.parametrize("role", ROLES)
def test_no_page_or_form_answers_bad_input_with_a_server_error(role, hostile_contacts, caplog, printed,
                                                               no_outbound_addresses):
    world = world_make(hostile_contacts)
    client = Client(raise_request_exception=False)
    _log_in(client, role)
    hostile_values = sorted({value for record in hostile_contacts for key, value in record.items() if key != "why"})
    crawl = Crawl(client, caplog, printed, hostile_values)

    forms: dict[tuple, Form] = {}
    for url, route, is_real in urls_to_visit(world):
        response = crawl.get(url)
        if not is_real or response.status_code != 200:
            continue
        if (route.pattern.name or "").endswith("_changelist"):
            for probe in admin_list_probes(route.pattern.callback.model_admin, response.wsgi_request):
                crawl.get(url, probe)
        if "text/html" in response.get("Content-Type", ""):
            for form in forms_on(url, response.content.decode()):
                if urlsplit(form.action).path not in SKIPPED_ACTIONS:
                    forms.setdefault(_form_key(form), form)

    # Deleting first would leave the other forms nothing to act on.
    for form in sorted(forms.values(), key=_is_deletion):
        crawl.submit(form)

    assert crawl.failures == [], "\n".join(crawl.failures)
    assert crawl.requests > 100
