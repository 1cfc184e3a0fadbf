"""Named value transforms a FieldMapping applies on the way in and, reversed, out.

A mapping's `transforms` is a list of specs, each a name or a dict with a `name` and
its parameters:

    ["trim", "lowercase"]
    ["trim", "phone_e164"]
    [{"name": "date", "format": "%m/%d/%Y"}]
    [{"name": "value_map", "map": {"customer": "Customer", "lead": "Lead"}}]
    ["optout_flag"]

`to_hub` runs the specs in order; `to_external` runs them in reverse. A value a
transform cannot convert raises TransformError: the sync turns it into a record error
for that field, and the rest of the record still syncs. A bad spec (unknown name,
missing parameter) raises InvalidTransformSpec when the chain is built.

Empty values (None and "") pass through unchanged unless a transform says otherwise.
`to_external` may return None, meaning "no statement": the field is left out of what
is sent (optout_flag does this for every state but an opt-out).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

from syncapp.engine.identity import InvalidPhone, normalize_phone


class TransformError(ValueError):
    """A value one transform cannot convert; a field-level error."""


class InvalidTransformSpec(ValueError):
    """A mapping names a transform that does not exist or lacks a parameter."""


@dataclass(frozen=True)
class TransformContext:
    """What transforms need to know about the connection the value comes from."""

    phone_region: str = "US"


def _is_empty(value: Any) -> bool:
    return value is None or value == ""


@dataclass(frozen=True)
class Transform:
    name: str
    to_hub: Callable[[Any, TransformContext], Any]
    to_external: Callable[[Any, TransformContext], Any]


def _text_transform(name: str, function: Callable[[str], str]) -> Transform:
    """Apply `function` to text both ways: the mapping says the field is kept that way."""

    def apply(value, context):
        return function(value) if isinstance(value, str) else value

    return Transform(name, apply, apply)


def _phone_to_hub(value, context: TransformContext):
    if _is_empty(value):
        return None
    try:
        return normalize_phone(str(value), context.phone_region)
    except InvalidPhone as error:
        raise TransformError(f"{value!r} {error}") from None


def _phone_to_external(value, context):
    return value


# strftime codes shown as the placeholders people read in error messages.
_FORMAT_LABELS = {"%Y": "YYYY", "%m": "MM", "%d": "DD", "%y": "YY", "%b": "Mon", "%B": "Month"}
ISO = "iso"
EPOCH_MS = "epoch_ms"


def _format_label(date_format: str) -> str:
    if date_format == ISO:
        return "YYYY-MM-DD"
    if date_format == EPOCH_MS:
        return "milliseconds since 1970 at midnight UTC"
    label = date_format
    for code, placeholder in _FORMAT_LABELS.items():
        label = label.replace(code, placeholder)
    return label


def _parse_date(value, date_format: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if date_format == EPOCH_MS:
        try:
            return datetime.fromtimestamp(int(value) / 1000, tz=timezone.utc).date()
        except (TypeError, ValueError, OverflowError, OSError):
            raise TransformError(f"{value!r} is not a date in {_format_label(date_format)}") from None
    text = str(value).strip()
    try:
        if date_format == ISO:
            return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text).date()
        return datetime.strptime(text, date_format).date()
    except ValueError as error:
        if "out of range" in str(error) or "must be in" in str(error):
            raise TransformError(f"{text!r} is not a real date ({error})") from None
        raise TransformError(f"{text!r} is not a date in the format {_format_label(date_format)}") from None


def _format_date(day: date, date_format: str):
    if date_format == ISO:
        return day.isoformat()
    if date_format == EPOCH_MS:
        return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp() * 1000)
    # strftime does not zero-pad years before 1000 on every platform; strptime wants four digits.
    return day.strftime(date_format.replace("%Y", f"{day.year:04d}"))


def _date_transform(spec: Mapping[str, Any]) -> Transform:
    """Hub dates are ISO (YYYY-MM-DD); the external side uses `format`.

    `format` is "iso", "epoch_ms" (HubSpot date properties: midnight UTC in ms) or a
    strftime pattern such as "%m/%d/%Y".
    """
    date_format = spec.get("format", ISO)
    if not isinstance(date_format, str) or not date_format:
        raise InvalidTransformSpec("date: `format` must be 'iso', 'epoch_ms' or a strftime pattern")

    def to_hub(value, context):
        if _is_empty(value):
            return value
        return _parse_date(value, date_format).isoformat()

    def to_external(value, context):
        if _is_empty(value):
            return value
        return _format_date(_parse_date(value, ISO), date_format)

    return Transform("date", to_hub, to_external)


def _value_map_transform(spec: Mapping[str, Any]) -> Transform:
    """Map external values to hub values ({"external": "hub"}) and back.

    A value outside the map is an error rather than passed through: the map is the list
    of values the other side accepts. Where two external values map to the same hub
    value, the first one listed is what goes out.
    """
    table = spec.get("map")
    if not isinstance(table, Mapping) or not table:
        raise InvalidTransformSpec("value_map: `map` must be a non-empty {external: hub} object")
    inbound = {str(external): hub for external, hub in table.items()}
    outbound: dict[str, Any] = {}
    for external, hub in inbound.items():
        outbound.setdefault(str(hub), external)

    def to_hub(value, context):
        if _is_empty(value):
            return value
        try:
            return inbound[str(value)]
        except KeyError:
            raise TransformError(f"{value!r} is not one of the mapped values ({', '.join(inbound)})") from None

    def to_external(value, context):
        if _is_empty(value):
            return value
        try:
            return outbound[str(value)]
        except KeyError:
            raise TransformError(f"{value!r} has no external value in the map ({', '.join(outbound)})") from None

    return Transform("value_map", to_hub, to_external)


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
    raise TransformError(f"{value!r} is not a true/false opt-out flag")


def _optout_to_external(value, context):
    return "true" if value in ("unsubscribed", "cleaned") else None


def _simple(factory: Transform) -> Callable[[Mapping[str, Any]], Transform]:
    return lambda spec: factory


TRANSFORMS: dict[str, Callable[[Mapping[str, Any]], Transform]] = {
    "trim": _simple(_text_transform("trim", str.strip)),
    "lowercase": _simple(_text_transform("lowercase", str.lower)),
    "uppercase": _simple(_text_transform("uppercase", str.upper)),
    "phone_e164": _simple(Transform("phone_e164", _phone_to_hub, _phone_to_external)),
    "date": _date_transform,
    "value_map": _value_map_transform,
    "optout_flag": _simple(Transform("optout_flag", _optout_to_hub, _optout_to_external)),
}


class TransformChain:
    """The transforms of one mapping, built once and applied to many values."""

    def __init__(self, specs: Sequence[str | Mapping[str, Any]] | None):
        self.transforms = [build_transform(spec) for spec in specs or ()]

    def __bool__(self) -> bool:
        return bool(self.transforms)

    def to_hub(self, value: Any, context: TransformContext) -> Any:
        for transform in self.transforms:
            value = transform.to_hub(value, context)
        return value

    def to_external(self, value: Any, context: TransformContext) -> Any:
        for transform in reversed(self.transforms):
            value = transform.to_external(value, context)
            if value is None:
                return None
        return value


def build_transform(spec: str | Mapping[str, Any]) -> Transform:
    """Return the transform a spec names, or raise InvalidTransformSpec."""
    if isinstance(spec, str):
        name, params = spec, {}
    elif isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
        name, params = spec["name"], spec
    else:
        raise InvalidTransformSpec(f"{spec!r} is not a transform name or a {{'name': ...}} object")
    try:
        factory = TRANSFORMS[name]
    except KeyError:
        raise InvalidTransformSpec(f"unknown transform {name!r} (known: {', '.join(TRANSFORMS)})") from None
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
