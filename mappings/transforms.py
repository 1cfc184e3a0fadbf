"""Named value transforms a FieldMapping applies on the way in and, reversed, out.

A mapping's `transforms` is a list of specs, each a name or a dict with a `name` and
its parameters:

    ["trim", "lowercase"]
    ["trim", "phone_e164"]
    [{"name": "date", "format": "%m/%d/%Y"}]
    [{"name": "value_map", "map": {"customer": "Customer", "lead": "Lead"}}]
    [{"name": "default_if_empty", "value": "Unknown", "direction": "out"}]
    ["optout_flag"]

A spec may carry `"direction": "in"` or `"out"` (default: both). `to_hub` runs the
specs that apply inbound, in order; `to_external` runs those that apply outbound, in
reverse: each direction is an ordered chain of its own. A value a transform cannot
convert raises TransformError: the sync turns it into a record error for that field,
and the rest of the record still syncs. A bad spec (unknown name, missing parameter)
raises InvalidTransformSpec when the chain is built.

Empty values (None and "") pass through unchanged unless a transform says otherwise
(default_if_empty, full_name). `to_external` may return None, meaning "no statement":
the field is left out of what is sent (optout_flag does this for every state but an
opt-out).
"""
from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from connections.providers.base import FIELD_KINDS
from syncapp.engine.identity import InvalidPhone, normalize_phone


class TransformError(ValueError):
    """A value one transform cannot convert; a field-level error."""


class InvalidTransformSpec(ValueError):
    """A mapping names a transform that does not exist or lacks a parameter."""


@dataclass(frozen=True)
class TransformContext:
    """What transforms need to know about the connection and the field at hand."""

    phone_region: str = "US"
    # The destination field's longest value (the hub's on the way in, the system's on
    # the way out), where known: `truncate` without a `length` cuts to it.
    max_length: int | None = None
    # The hub record's values on the way out, for transforms that build one external
    # value from several hub fields (full_name joins first and last name).
    hub_values: Mapping[str, Any] | None = None


def _is_empty(value: Any) -> bool:
    return value is None or value == ""


IN = "in"
OUT = "out"
BOTH = "both"
DIRECTIONS = (IN, OUT, BOTH)


@dataclass(frozen=True)
class Transform:
    name: str
    to_hub: Callable[[Any, TransformContext], Any]
    to_external: Callable[[Any, TransformContext], Any]
    # Hub fields read from TransformContext.hub_values on the way out.
    reads_hub_fields: tuple[str, ...] = ()
    # Produces a value from an empty one: the caller must not skip it for being empty.
    fills_empty: bool = False
    # Reads TransformContext.max_length.
    uses_max_length: bool = False


def _text_transform(name: str, function: Callable[[str], str]) -> Transform:
    """Apply `function` to text both ways: the mapping says the field is kept that way.

    Values that are not text (numbers, booleans) pass through: there is nothing to trim
    or recase in them.
    """

    def apply(value, context):
        return function(value) if isinstance(value, str) else value

    return Transform(name, apply, apply)


# --- title case -------------------------------------------------------------------

# Surname particles kept in lower case inside a name ("Ludwig van Beethoven", "Ann van
# der Berg", "Maria da Silva"): capitalizing them is the error people notice. Also the
# words that make a surname with the word after them when a full name is split.
NAME_PARTICLES = frozenset({
    "van", "von", "der", "den", "de", "del", "della", "di", "da", "das", "do", "dos", "du", "la", "le", "ten",
    "ter", "bin", "binti", "ibn", "al", "el", "zu", "y",
})


def _capitalize(part: str) -> str:
    """Return `part` with its first character in title case and the rest in lower case.

    A part whose characters change length when recased (the Turkish dotted capital I
    lowercases to two code points, "ŉ" titlecases to two) is left as typed: recasing it
    would not be stable, and a second pass would change it again.
    """
    if not part:
        return part
    first, rest = part[0].title(), part[1:].lower()
    if len(first) != 1 or len(rest) != len(part) - 1:
        return part
    return first + rest


def _title_word(word: str, *, particle_allowed: bool) -> str:
    """Return one whitespace-separated word of a name in title case."""
    has_upper = any(char.isupper() for char in word)
    has_lower = any(char.islower() for char in word)
    if has_upper and has_lower:
        # Typed in mixed case on purpose ("McDonald", "DeVries", "MacKenzie"): kept.
        return word
    if particle_allowed and word.lower() in NAME_PARTICLES:
        return word.lower()
    parts = word.split("-")
    return "-".join(_title_part(part) for part in parts)


def _title_part(part: str) -> str:
    lowered = part.lower()
    # O'Neil, D'Angelo, L'Heureux: one letter and an apostrophe start a name of its own.
    for apostrophe in ("'", "\u2019"):
        head, sep, tail = part.partition(apostrophe)
        if sep and len(head) == 1 and head.isalpha() and tail:
            return _capitalize(head) + sep + _capitalize(tail)
    # McDonald, McKenzie: "Mc" is always a prefix. "Mac" is not (Mack, Macy, Machado).
    if lowered.startswith("mc") and len(part) > 2 and part[2].isalpha():
        return _capitalize(part[:2]) + _capitalize(part[2:])
    return _capitalize(part)


def title_case(text: str) -> str:
    """Return a name in title case, in any script.

    - Words typed in lower or upper case are capitalized: "ANN LEE" and "ann lee" give
      "Ann Lee"; "anne-marie" gives "Anne-Marie"; "o'neil" gives "O'Neil" and
      "mcdonald" gives "McDonald".
    - A word already in mixed case is kept as typed: "McDonald", "DeVries", "LaToya".
    - Surname particles after the first word stay lower case: "ANN VAN DER BERG" gives
      "Ann van der Berg"; a particle that starts the value is capitalized only when it
      is the only word ("van der berg" gives "van der Berg").
    - Scripts without case (Chinese, Arabic, Hebrew...) are unchanged; spacing is kept.
    Applying it twice gives the same result as applying it once.
    """
    words = text.split(" ")
    several = sum(1 for word in words if word) > 1
    return " ".join(_title_word(word, particle_allowed=several) for word in words)


# --- phone --------------------------------------------------------------------------


def _phone_to_hub(value, context: TransformContext):
    if _is_empty(value):
        return None
    try:
        return normalize_phone(str(value), context.phone_region)
    except InvalidPhone as error:
        raise TransformError(f"{value!r} {error}") from None


def _phone_to_external(value, context):
    return value


# --- dates --------------------------------------------------------------------------

# strftime codes shown as the placeholders people read in error messages.
_FORMAT_LABELS = {"%Y": "YYYY", "%m": "MM", "%d": "DD", "%y": "YY", "%b": "Mon", "%B": "Month"}
ISO = "iso"
ISO_DATETIME = "iso_datetime"
EPOCH_MS = "epoch_ms"
BIRTHDAY = "birthday"
# What people type for the common patterns, accepted as the pattern they mean.
_FORMAT_ALIASES = {
    "YYYY-MM-DD": ISO, "MM/DD/YYYY": "%m/%d/%Y", "DD/MM/YYYY": "%d/%m/%Y", "DD.MM.YYYY": "%d.%m.%Y",
    "MM/DD": BIRTHDAY,
}
DATE_FORMATS = {
    ISO: "ISO 8601 date (YYYY-MM-DD)",
    ISO_DATETIME: "ISO 8601 date and time with offset (2024-03-01T00:00:00+00:00)",
    EPOCH_MS: "Milliseconds since 1970, midnight UTC (CRM date properties)",
    "%m/%d/%Y": "MM/DD/YYYY",
    "%d/%m/%Y": "DD/MM/YYYY",
    BIRTHDAY: "Birthday without a year, MM/DD (audience birthday fields)",
}
# The longest date text worth parsing: anything longer is not a date, and a 10,000
# digit "timestamp" would cost a big-integer conversion to find that out.
_MAX_DATE_TEXT = 64


def _format_label(date_format: str) -> str:
    if date_format == ISO:
        return "YYYY-MM-DD"
    if date_format == ISO_DATETIME:
        return "ISO 8601 date and time with a UTC offset"
    if date_format == EPOCH_MS:
        return "milliseconds since 1970 at midnight UTC"
    if date_format == BIRTHDAY:
        return "MM/DD"
    label = date_format
    for code, placeholder in _FORMAT_LABELS.items():
        label = label.replace(code, placeholder)
    return label


def _date_text(value) -> str:
    text = str(value).strip()
    if len(text) > _MAX_DATE_TEXT:
        raise TransformError(f"a {len(text)}-character value is not a date")
    return text


def _parse_date(value, date_format: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, bool):
        raise TransformError(f"{value!r} is not a date")
    text = _date_text(value)
    if date_format == EPOCH_MS:
        try:
            return datetime.fromtimestamp(int(text) / 1000, tz=UTC).date()
        except (TypeError, ValueError, OverflowError, OSError):
            raise TransformError(f"{text!r} is not a date in {_format_label(date_format)}") from None
    try:
        if date_format == ISO:
            return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text).date()
        if date_format == ISO_DATETIME:
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                raise TransformError(f"{text!r} has no UTC offset, so its date is unknown")
            # The calendar date the system shows, in the offset it wrote.
            return moment.date()
        return datetime.strptime(text, date_format).date()
    except TransformError:
        raise
    except ValueError as error:
        if "out of range" in str(error) or "must be in" in str(error):
            raise TransformError(f"{text!r} is not a real date ({error})") from None
        raise TransformError(f"{text!r} is not a date in the format {_format_label(date_format)}") from None


def _format_date(day: date, date_format: str):
    if date_format == ISO:
        return day.isoformat()
    if date_format == ISO_DATETIME:
        return datetime(day.year, day.month, day.day, tzinfo=UTC).isoformat()
    if date_format == EPOCH_MS:
        return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
    # strftime does not zero-pad years before 1000 on every platform; strptime wants four digits.
    return day.strftime(date_format.replace("%Y", f"{day.year:04d}"))


# A birthday without a year in the hub: ISO 8601's partial date "--MM-DD".
_LEAP_YEAR = 2000


def _month_day(month: int, day: int, text: str) -> tuple[int, int]:
    try:
        date(_LEAP_YEAR, month, day)
    except ValueError as error:
        raise TransformError(f"{text!r} is not a real day of the year ({error})") from None
    return month, day


def _birthday_from_external(value) -> tuple[int, int]:
    text = _date_text(value)
    month, sep, day = text.partition("/")
    if not (sep and month.isdigit() and day.isdigit() and len(month) <= 2 and len(day) <= 2):
        raise TransformError(f"{text!r} is not a birthday in the format MM/DD")
    return _month_day(int(month), int(day), text)


def _birthday_from_hub(value) -> tuple[int, int]:
    """Read a hub birthday: the partial date "--MM-DD", or a full date whose year is dropped."""
    if isinstance(value, date):
        return value.month, value.day
    text = _date_text(value)
    if text.startswith("--") and len(text) == 7 and text[4] == "-" and text[2:4].isdigit() and text[5:].isdigit():
        return _month_day(int(text[2:4]), int(text[5:]), text)
    day = _parse_date(text, ISO)
    return day.month, day.day


def _date_transform(spec: Mapping[str, Any]) -> Transform:
    """Hub dates are ISO (YYYY-MM-DD); the external side uses `format`.

    `format` is "iso", "iso_datetime" (sent as midnight UTC, read as the date in the
    offset written), "epoch_ms" (HubSpot date properties: midnight UTC in ms), a
    strftime pattern such as "%m/%d/%Y" (or "MM/DD/YYYY"), or "birthday": Mailchimp's
    MM/DD without a year, kept in the hub as ISO 8601's partial date "--MM-DD" (a full
    hub date goes out without its year).
    """
    date_format = spec.get("format", ISO)
    if isinstance(date_format, str):
        date_format = _FORMAT_ALIASES.get(date_format.strip(), date_format)
    if not isinstance(date_format, str) or not date_format:
        raise InvalidTransformSpec("date: `format` must be 'iso', 'iso_datetime', 'epoch_ms', 'birthday' "
                                   "or a strftime pattern")
    if date_format not in DATE_FORMATS and not _complete_pattern(date_format):
        raise InvalidTransformSpec(f"date: `format` {date_format!r} must be 'iso', 'iso_datetime', 'epoch_ms', "
                                   "'birthday' or a strftime pattern with a day (%d), a month (%m, %b or %B) "
                                   "and a year (%Y)")

    if date_format == BIRTHDAY:
        def to_hub(value, context):
            if _is_empty(value):
                return value
            month, day = _birthday_from_external(value)
            return f"--{month:02d}-{day:02d}"

        def to_external(value, context):
            if _is_empty(value):
                return value
            month, day = _birthday_from_hub(value)
            return f"{month:02d}/{day:02d}"

        return Transform("date", to_hub, to_external)

    def to_hub(value, context):
        if _is_empty(value):
            return value
        return _parse_date(value, date_format).isoformat()

    def to_external(value, context):
        if _is_empty(value):
            return value
        return _format_date(_parse_date(value, ISO), date_format)

    return Transform("date", to_hub, to_external)


def _complete_pattern(pattern: str) -> bool:
    """Whether a strftime pattern names a day, a month and a four-digit year (round trips)."""
    return "%d" in pattern and any(code in pattern for code in ("%m", "%b", "%B")) and "%Y" in pattern


# --- value maps ---------------------------------------------------------------------


def _value_map_transform(spec: Mapping[str, Any]) -> Transform:
    """Map external values to hub values ({"external": "hub"}) and back.

    A hub value may also be a list: {"Prospect": ["lead", "mql"]} sends "Prospect" for
    either stage (a lifecycle stage to a tag or a merge value) and reads "Prospect" as
    the first one listed. Where two external values map to the same hub value, the
    first one listed is what goes out.

    A value outside the map is an error rather than passed through, the map being the
    list of values the other side accepts, unless a default says what to use instead:
    `default` is the external value sent for a hub value outside the map, `hub_default`
    the hub value stored for an external value outside it.
    """
    table = spec.get("map")
    if not isinstance(table, Mapping) or not table:
        raise InvalidTransformSpec("value_map: `map` must be a non-empty {external: hub} object")
    inbound: dict[str, Any] = {}
    outbound: dict[str, Any] = {}
    for external, hub in table.items():
        hubs = list(hub) if isinstance(hub, list | tuple) else [hub]
        if not hubs or any(isinstance(item, Mapping | list | tuple) for item in hubs):
            raise InvalidTransformSpec(f"value_map: the hub value of {external!r} must be a value or a list of values")
        inbound[str(external)] = hubs[0]
        for item in hubs:
            outbound.setdefault(str(item), external)
    has_default, default = "default" in spec, spec.get("default")
    has_hub_default, hub_default = "hub_default" in spec, spec.get("hub_default")

    def to_hub(value, context):
        if _is_empty(value):
            return value
        key = _map_key(value)
        if key in inbound:
            return inbound[key]
        if has_hub_default:
            return hub_default
        raise TransformError(f"{_shown(value)} is not one of the mapped values ({_listed(inbound)})")

    def to_external(value, context):
        if _is_empty(value):
            return value
        key = _map_key(value)
        if key in outbound:
            return outbound[key]
        if has_default:
            return default
        raise TransformError(f"{_shown(value)} has no external value in the map ({_listed(outbound)})")

    return Transform("value_map", to_hub, to_external)


def _map_key(value) -> str:
    if isinstance(value, Mapping | list | tuple):
        raise TransformError("a list or object cannot be looked up in a value map")
    return str(value)


def _shown(value, limit: int = 80) -> str:
    """Return repr(value), cut short: an error message must not carry 10,000 characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _listed(values: Mapping[str, Any], limit: int = 10) -> str:
    names = list(values)
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


# --- defaults, truncation, full names ------------------------------------------------


def _default_if_empty_transform(spec: Mapping[str, Any]) -> Transform:
    """Put `value` in place of an empty value (None, "" or only spaces).

    In the directions the spec applies to: inbound, an empty external value is stored
    in the hub as `value`; outbound, an empty hub value is sent as `value`. Give it a
    `direction` unless both are meant: with both, an empty hub value goes out as
    `value` and comes back as `value`.
    """
    if "value" not in spec or _is_empty(spec["value"]) or isinstance(spec["value"], Mapping | list):
        raise InvalidTransformSpec("default_if_empty: `value` must be a non-empty value")
    default = spec["value"]

    def apply(value, context):
        if value is None or (isinstance(value, str) and not value.strip()):
            return default
        return value

    return Transform("default_if_empty", apply, apply, fills_empty=True)


def _safe_cut(text: str, length: int) -> str:
    """Return at most `length` characters of `text`, never splitting a character.

    Counts code points (what the providers' limits count) and moves the cut back so
    that no combining mark, variation selector, emoji modifier or zero-width joiner is
    separated from the character it belongs to, and no flag (a pair of regional
    indicators) is halved.
    """
    if len(text) <= length:
        return text
    cut = length
    while cut > 0 and (_extends(text[cut]) or text[cut - 1] == "\u200d"):
        cut -= 1
    if cut > 0 and _regional_indicator(text[cut]):
        run = 0
        while cut - run - 1 >= 0 and _regional_indicator(text[cut - run - 1]):
            run += 1
        if run % 2:
            cut -= 1
    # A lone surrogate (from a bad decode) is never left at the end of the cut.
    while cut > 0 and "\ud800" <= text[cut - 1] <= "\udbff":
        cut -= 1
    return text[:cut]


def _extends(char: str) -> bool:
    """Whether `char` belongs to the character before it (a grapheme extender)."""
    return (unicodedata.combining(char) != 0 or unicodedata.category(char) in ("Mn", "Me", "Mc")
            or char == "\u200d" or "\ufe00" <= char <= "\ufe0f" or "\U0001f3fb" <= char <= "\U0001f3ff"
            or "\U000e0020" <= char <= "\U000e007f" or "\udc00" <= char <= "\udfff")


def _regional_indicator(char: str) -> bool:
    return "\U0001f1e6" <= char <= "\U0001f1ff"


def _truncate_transform(spec: Mapping[str, Any]) -> Transform:
    """Cut text to `length` characters, or to the destination field's maximum.

    Without `length`, the limit is the destination's (TransformContext.max_length: the
    hub field's on the way in, the system's field on the way out); where neither is
    known, the value passes unchanged. Numbers and other non-text values pass unchanged.
    """
    length = spec.get("length")
    if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length < 1):
        raise InvalidTransformSpec("truncate: `length` must be a whole number of characters, at least 1")

    def apply(value, context):
        limit = length if length is not None else context.max_length
        if not isinstance(value, str) or limit is None:
            return value
        cut = _safe_cut(value, limit)
        if value and not cut:
            raise TransformError(f"cannot be cut to {limit} characters without splitting a character")
        return cut

    return Transform("truncate", apply, apply, uses_max_length=True)


FIRST, LAST = "first", "last"


def split_full_name(text: str) -> tuple[str, str]:
    """Return (first, last) of a full name written given name first.

    The last word is the last name, with any surname particles before it ("Ann van der
    Berg" gives "Ann" and "van der Berg"); the rest is the first name. One word is a
    first name only. Names written without spaces (Chinese, Japanese) are one word.
    """
    words = text.split()
    if len(words) <= 1:
        return (words[0] if words else "", "")
    start = len(words) - 1
    while start > 1 and words[start - 1].lower() in NAME_PARTICLES:
        start -= 1
    return " ".join(words[:start]), " ".join(words[start:])


def _full_name_transform(spec: Mapping[str, Any]) -> Transform:
    """Split an external full name into the hub's first or last name, and join them back.

    `part` is "first" or "last": the mapping fills that hub field from the external
    full name. On the way out both names are joined ("Ann Marie" and "Lee" give "Ann
    Marie Lee"), read from the hub record (TransformContext.hub_values): the mappings
    of both parts then send the same value. `first_field`/`last_field` name the hub
    fields (first_name, last_name by default).
    """
    part = spec.get("part")
    if part not in (FIRST, LAST):
        raise InvalidTransformSpec("full_name: `part` must be 'first' or 'last'")
    first_field = spec.get("first_field", "first_name")
    last_field = spec.get("last_field", "last_name")
    if not (isinstance(first_field, str) and first_field and isinstance(last_field, str) and last_field):
        raise InvalidTransformSpec("full_name: `first_field` and `last_field` must name hub fields")

    def to_hub(value, context):
        if _is_empty(value):
            return value
        if not isinstance(value, str):
            raise TransformError(f"{_shown(value)} is not a name")
        first, last = split_full_name(value)
        return first if part == FIRST else last

    def to_external(value, context):
        if context.hub_values is None:
            raise TransformError("the full name needs the hub record's first and last name")
        names = [context.hub_values.get(first_field), context.hub_values.get(last_field)]
        for name in names:
            if name is not None and not isinstance(name, str):
                raise TransformError(f"{_shown(name)} is not a name")
        return " ".join(" ".join(name.split()) for name in names if name and name.strip())

    return Transform("full_name", to_hub, to_external, reads_hub_fields=(first_field, last_field), fills_empty=True)


# --- consent flag -------------------------------------------------------------------

_TRUE = frozenset({"true", "1", "yes", "y", "on"})
_FALSE = frozenset({"false", "0", "no", "n", "off", ""})


def _optout_to_hub(value, context):
    """HubSpot's hs_email_optout: "true" is an unsubscribe; false says nothing.

    False is no statement rather than "subscribed": not having opted out of one
    subscription type is not an opt-in, and must not undo an opt-out read elsewhere.
    """
    if value is None or isinstance(value, bool):
        return "unsubscribed" if value else None
    text = str(value).strip().lower()
    if text in _TRUE:
        return "unsubscribed"
    if text in _FALSE:
        return None
    raise TransformError(f"{_shown(value)} is not a true/false opt-out flag")


def _optout_to_external(value, context):
    return "true" if value in ("unsubscribed", "cleaned") else None


def _simple(factory: Transform) -> Callable[[Mapping[str, Any]], Transform]:
    return lambda spec: factory


TRANSFORMS: dict[str, Callable[[Mapping[str, Any]], Transform]] = {
    "trim": _simple(_text_transform("trim", str.strip)),
    "lowercase": _simple(_text_transform("lowercase", str.lower)),
    "uppercase": _simple(_text_transform("uppercase", str.upper)),
    "title_case": _simple(_text_transform("title_case", title_case)),
    "phone_e164": _simple(Transform("phone_e164", _phone_to_hub, _phone_to_external)),
    "date": _date_transform,
    "value_map": _value_map_transform,
    "default_if_empty": _default_if_empty_transform,
    "truncate": _truncate_transform,
    "full_name": _full_name_transform,
    "optout_flag": _simple(Transform("optout_flag", _optout_to_hub, _optout_to_external)),
}


# --- metadata for the mapping editor ----------------------------------------------


@dataclass(frozen=True)
class ParamInfo:
    """One parameter of a transform, as the mapping editor asks for it."""

    name: str
    label: str
    # "text", "number", "choice" or "map".
    kind: str
    required: bool = False
    # For "choice": (value, label) pairs.
    choices: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class TransformInfo:
    """What the mapping editor shows about a transform and where it fits."""

    label: str
    help: str
    params: tuple[ParamInfo, ...] = ()
    # FIELD_KINDS (connections.providers.base) of the fields it can apply to, each side.
    external_kinds: frozenset[str] = field(default_factory=frozenset)
    hub_kinds: frozenset[str] = field(default_factory=frozenset)


_TEXTUAL = frozenset({"text", "email", "url", "enum", "phone", "address"})

TRANSFORM_INFO: dict[str, TransformInfo] = {
    "trim": TransformInfo(
        "Trim spaces", "Removes spaces and line breaks at both ends of the text.",
        external_kinds=_TEXTUAL, hub_kinds=_TEXTUAL),
    "lowercase": TransformInfo(
        "Lower case", "Writes the text in lower case, both ways.",
        external_kinds=frozenset({"text", "email", "url", "enum"}),
        hub_kinds=frozenset({"text", "email", "url", "enum"})),
    "uppercase": TransformInfo(
        "Upper case", "Writes the text in upper case, both ways (country codes, states).",
        external_kinds=frozenset({"text", "enum"}), hub_kinds=frozenset({"text", "enum"})),
    "title_case": TransformInfo(
        "Title case (names)",
        "Capitalizes each word of a name typed in lower or upper case (\"ANN LEE\" becomes \"Ann Lee\"), keeps "
        "names typed in mixed case (\"McDonald\"), particles such as \"van der\" in lower case, and text in "
        "scripts without case unchanged.",
        external_kinds=frozenset({"text"}), hub_kinds=frozenset({"text"})),
    "phone_e164": TransformInfo(
        "Phone to E.164",
        "Reads a phone number, national ones in the connection's default region, and keeps it as +country "
        "number. Numbers with letters or an extension are refused.",
        external_kinds=frozenset({"phone", "text"}), hub_kinds=frozenset({"phone"})),
    "date": TransformInfo(
        "Date format",
        "Converts between the hub's dates (YYYY-MM-DD) and the system's format. Birthday fields (MM/DD) "
        "have no year: the hub keeps them as --MM-DD.",
        params=(ParamInfo("format", "The system's format", "choice", required=True,
                          choices=tuple(DATE_FORMATS.items())),),
        external_kinds=frozenset({"date", "datetime", "birthday", "text", "number"}),
        hub_kinds=frozenset({"date", "birthday", "text"})),
    "value_map": TransformInfo(
        "Value map",
        "Replaces each listed value with its counterpart: the system's value on the left, the hub's on the right "
        "(a lifecycle stage to a tag or a merge value). A value outside the map is a record error unless a "
        "default is given.",
        params=(ParamInfo("map", "Values (system → hub)", "map", required=True),
                ParamInfo("default", "Sent for a hub value outside the map", "text"),
                ParamInfo("hub_default", "Stored for a system value outside the map", "text")),
        external_kinds=frozenset({"enum", "text", "tags", "bool", "number"}),
        hub_kinds=frozenset({"enum", "text", "bool", "number"})),
    "default_if_empty": TransformInfo(
        "Default when empty",
        "Puts a value in place of an empty one. Into the hub: an empty system value is stored as the default. "
        "Out of the hub: an empty hub value is sent as the default. Choose the direction it applies in.",
        params=(ParamInfo("value", "Default value", "text", required=True),),
        external_kinds=frozenset({"text", "number", "date", "datetime", "birthday", "bool", "enum", "url",
                                  "address"}),
        hub_kinds=frozenset({"text", "number", "date", "datetime", "birthday", "bool", "enum", "url", "address"})),
    "truncate": TransformInfo(
        "Truncate",
        "Cuts text to a number of characters, without splitting accented letters or emoji. Without a length, "
        "cuts to the longest value the destination field holds.",
        params=(ParamInfo("length", "Maximum characters", "number"),),
        external_kinds=frozenset({"text", "url", "address", "enum"}),
        hub_kinds=frozenset({"text", "url", "address", "enum"})),
    "full_name": TransformInfo(
        "Full name split and join",
        "Maps a system's full name onto the hub's first and last name: into the hub it splits \"Ann Marie Lee\" "
        "into \"Ann Marie\" and \"Lee\"; out of it, it joins them. Map first name with part 'first' and last "
        "name with part 'last' to the same full name field.",
        params=(ParamInfo("part", "Name part", "choice", required=True,
                          choices=((FIRST, "First name"), (LAST, "Last name"))),),
        external_kinds=frozenset({"text"}), hub_kinds=frozenset({"text"})),
    "optout_flag": TransformInfo(
        "Opt-out flag",
        "Reads a true/false opt-out (a CRM's email opt-out property) as an unsubscribe; sends only opt-outs.",
        external_kinds=frozenset({"bool"}), hub_kinds=frozenset({"consent"})),
}
# Formats of `date` that need a particular kind of field on the system's side.
_DATE_FORMAT_KINDS = {
    EPOCH_MS: frozenset({"date", "datetime", "number"}),
    BIRTHDAY: frozenset({"birthday", "text"}),
    ISO_DATETIME: frozenset({"datetime", "text"}),
}


# --- chains -----------------------------------------------------------------------


@dataclass(frozen=True)
class TraceStep:
    """One step of a chain applied to a value: what came out, or why it failed."""

    name: str
    label: str
    value: Any = None
    error: str | None = None


@dataclass(frozen=True)
class _Step:
    transform: Transform
    direction: str

    @property
    def inbound(self) -> bool:
        return self.direction in (IN, BOTH)

    @property
    def outbound(self) -> bool:
        return self.direction in (OUT, BOTH)


class TransformChain:
    """The transforms of one mapping, built once and applied to many values."""

    def __init__(self, specs: Sequence[str | Mapping[str, Any]] | None):
        self.steps = [_Step(build_transform(spec), _direction(spec)) for spec in specs or ()]
        self.inbound = [step.transform for step in self.steps if step.inbound]
        self.outbound = [step.transform for step in reversed(self.steps) if step.outbound]

    @property
    def transforms(self) -> list[Transform]:
        return [step.transform for step in self.steps]

    def __bool__(self) -> bool:
        return bool(self.steps)

    @property
    def hub_fields_read(self) -> tuple[str, ...]:
        """The hub fields the outbound chain reads from TransformContext.hub_values."""
        return tuple(name for transform in self.outbound for name in transform.reads_hub_fields)

    @property
    def fills_empty_out(self) -> bool:
        """Whether the outbound chain can make a value out of an empty hub value."""
        return any(transform.fills_empty for transform in self.outbound)

    @property
    def uses_max_length(self) -> bool:
        return any(transform.uses_max_length for transform in self.transforms)

    @property
    def joins(self) -> bool:
        """Whether the outbound value is built from several hub fields (full_name)."""
        return bool(self.hub_fields_read)

    def to_hub(self, value: Any, context: TransformContext) -> Any:
        for transform in self.inbound:
            value = transform.to_hub(value, context)
        return value

    def to_external(self, value: Any, context: TransformContext) -> Any:
        for transform in self.outbound:
            value = transform.to_external(value, context)
            if value is None:
                return None
        return value

    def trace_to_hub(self, value: Any, context: TransformContext) -> list[TraceStep]:
        """Return each inbound step's result, stopping at the first that fails."""
        return _trace(self.inbound, value, context, outbound=False)

    def trace_to_external(self, value: Any, context: TransformContext) -> list[TraceStep]:
        """Return each outbound step's result, stopping at a failure or a "no statement" (None)."""
        return _trace(self.outbound, value, context, outbound=True)


def _trace(transforms: list[Transform], value: Any, context: TransformContext, *, outbound: bool) -> list[TraceStep]:
    steps = []
    for transform in transforms:
        label = TRANSFORM_INFO[transform.name].label
        try:
            value = (transform.to_external if outbound else transform.to_hub)(value, context)
        except TransformError as error:
            steps.append(TraceStep(transform.name, label, error=str(error)))
            break
        steps.append(TraceStep(transform.name, label, value))
        if outbound and value is None:
            break
    return steps


def _direction(spec: str | Mapping[str, Any]) -> str:
    return spec.get("direction", BOTH) if isinstance(spec, Mapping) else BOTH


def build_transform(spec: str | Mapping[str, Any]) -> Transform:
    """Return the transform a spec names, or raise InvalidTransformSpec."""
    if isinstance(spec, str):
        name, params = spec, {}
    elif isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
        name, params = spec["name"], spec
    else:
        raise InvalidTransformSpec(f"{_shown(spec)} is not a transform name or a {{'name': ...}} object")
    try:
        factory = TRANSFORMS[name]
    except KeyError:
        raise InvalidTransformSpec(f"unknown transform {_shown(name)} (known: {', '.join(TRANSFORMS)})") from None
    if params.get("direction", BOTH) not in DIRECTIONS:
        raise InvalidTransformSpec(f"{name}: `direction` must be 'in', 'out' or 'both'")
    return factory(params)


def transform_spec_errors(specs: Any) -> list[str]:
    """Return what is wrong with a mapping's transforms, for forms and checks."""
    if not isinstance(specs, list):
        return ["transforms must be a list"]
    errors = []
    for spec in specs:
        try:
            build_transform(spec)
        except InvalidTransformSpec as error:
            errors.append(str(error))
    return errors


def transform_fit_errors(specs: Any, *, external_kind: str, hub_kind: str) -> list[str]:
    """Return why a mapping's transforms cannot work between fields of these kinds.

    Kinds are connections.providers.base.FIELD_KINDS. Specs that do not build are left
    to transform_spec_errors.
    """
    errors = [f"{_shown(kind)} is not a kind of field" for kind in (external_kind, hub_kind) if kind not in FIELD_KINDS]
    if errors or not isinstance(specs, list):
        return errors
    for spec in specs:
        try:
            transform = build_transform(spec)
        except InvalidTransformSpec:
            continue
        info = TRANSFORM_INFO[transform.name]
        if external_kind not in info.external_kinds:
            errors.append(f"{transform.name} cannot apply to a {external_kind} field")
        if hub_kind not in info.hub_kinds:
            errors.append(f"{transform.name} cannot fill the hub's {hub_kind} field")
        if transform.name == "date" and isinstance(spec, Mapping):
            date_format = _FORMAT_ALIASES.get(str(spec.get("format", ISO)).strip(), spec.get("format", ISO))
            fits = _DATE_FORMAT_KINDS.get(date_format)
            if fits is not None and external_kind in info.external_kinds and external_kind not in fits:
                errors.append(f"date format {_format_label(date_format)} cannot apply to a {external_kind} field")
    return errors


def full_name_part(specs: Any) -> str | None:
    """Return the name part ("first" or "last") a mapping's full_name transform fills, if any."""
    for spec in specs if isinstance(specs, list) else ():
        if isinstance(spec, Mapping) and spec.get("name") == "full_name" and spec.get("part") in (FIRST, LAST):
            return spec["part"]
    return None


def shared_field_error(specs_a: Any, specs_b: Any, *, external_field: str) -> str | None:
    """Return why two mappings of one connection cannot both target `external_field`.

    Only a full name may be the target of two mappings: one with full_name part
    "first", the other with part "last" (and the same hub fields, so that both send
    the same joined value). Any other pair would write two different values to one
    field, and the last one sent would win.
    """
    parts = {full_name_part(specs_a), full_name_part(specs_b)}
    if parts == {FIRST, LAST}:
        fields_a = _full_name_fields(specs_a)
        if fields_a == _full_name_fields(specs_b):
            return None
        return f"{external_field}: the two full_name mappings join different hub fields"
    return (f"{external_field} is already the target of another mapping: only a full name (full_name with "
            "part 'first' and part 'last') may be the target of two")


def _full_name_fields(specs: list) -> tuple[str, str]:
    spec = next(spec for spec in specs if isinstance(spec, Mapping) and spec.get("name") == "full_name")
    return spec.get("first_field", "first_name"), spec.get("last_field", "last_name")
