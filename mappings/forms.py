"""The mapping editor's forms: one mapping, its transform chain, and a new merge field.

The mapping form checks the mapping with `mappings.validation` against the connection's
discovered fields and the sync's other mappings, and puts each reason next to the
field it concerns.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django import forms

from connections.models import Connection
from connections.providers.base import FIELD_KINDS, FieldInfo
from mappings.hub_fields import ATTRIBUTE_NAME, ATTRIBUTE_PREFIX, hub_fields
from mappings.models import FieldMapping
from mappings.transforms import TRANSFORM_INFO
from mappings.validation import MappingDraft, Role, mapping_problems

CUSTOM = "__custom__"
# Transform rows the chain form shows: the stored ones plus this many blank ones.
BLANK_TRANSFORM_ROWS = 1
MAX_TRANSFORMS = 12
BOTH_WAYS = "both"
APPLIES_CHOICES = [(BOTH_WAYS, "Both ways"), ("in", "Into the hub only"), ("out", "Out of the hub only")]


def _get(info: Any, key: str, default: Any = None) -> Any:
    if isinstance(info, Mapping):
        return info.get(key, default)
    return getattr(info, key, default)


def transform_params(name: str) -> list[tuple[str, Any]]:
    """Return (param name, param info) pairs of transform `name`, in TRANSFORM_INFO's order."""
    params = _get(TRANSFORM_INFO.get(name), "params", ()) or ()
    if isinstance(params, Mapping):
        return list(params.items())
    return [(_get(param, "name"), param) for param in params]


def transform_label(name: str) -> str:
    return str(_get(TRANSFORM_INFO.get(name), "label", name) or name)


def external_choice(connection_id: int, name: str) -> str:
    return f"{connection_id}:{name}"


class MappingForm(forms.Form):
    """One mapping: which fields, which way, who owns it, and how conflicts are settled."""

    connection = forms.TypedChoiceField(coerce=int, label="System")
    hub_field = forms.ChoiceField(label="Hub field")
    attribute_name = forms.CharField(
        required=False, max_length=64, label="Custom attribute name",
        help_text="Only for a custom attribute: letters, digits and _, starting with a letter.",
    )
    external_field = forms.CharField(label="Field in the system", widget=forms.Select)
    direction = forms.ChoiceField(choices=FieldMapping.Direction.choices, initial=FieldMapping.Direction.BOTH)
    is_owner = forms.BooleanField(required=False, label="This system owns the field (source of truth)")
    conflict_policy = forms.ChoiceField(choices=FieldMapping.ConflictPolicy.choices, label="When both sides changed")
    never_overwrite_with_empty = forms.BooleanField(required=False, initial=True,
                                                    label="Never overwrite a value with an empty one")

    def __init__(self, *args, connections: Sequence[Connection], catalogs: Mapping[int, list[FieldInfo] | None],
                 siblings: Sequence[MappingDraft], custom_attributes: Sequence[str] = (), mapping_pk: int | None = None,
                 chain: list | None = None, roles: Mapping[int, Role] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.connections = {connection.pk: connection for connection in connections}
        self.catalogs = catalogs
        # What the sync does with each connection; the direction must fit it.
        self.roles = roles or {}
        self.siblings = siblings
        self.mapping_pk = mapping_pk
        # The transform chain from its own formset; None while that formset has errors.
        self.chain = chain
        self.warnings: list[str] = []
        self.catalog_field: FieldInfo | None = None
        self.fields["connection"].choices = [(connection.pk, connection.name) for connection in connections]
        self.fields["hub_field"].choices = [
            *((field.name, f"{field.label} ({field.kind})") for field in hub_fields(custom_attributes)),
            (CUSTOM, "A new custom attribute (name it below)"),
        ]
        groups = []
        for connection in connections:
            fields = catalogs.get(connection.pk) or []
            groups.append((connection.name, [
                (external_choice(connection.pk, field.name), _field_option(field)) for field in fields
            ]))
        self.fields["external_field"].widget.choices = [("", "Choose a field"), *groups]

    def clean_hub_field(self):
        value = self.cleaned_data["hub_field"]
        if value != CUSTOM:
            return value
        name = (self.data.get(self.add_prefix("attribute_name")) or "").strip()
        if not ATTRIBUTE_NAME.fullmatch(name):
            raise forms.ValidationError("Name the custom attribute: letters, digits and _, starting with a letter "
                                        "(at most 64).", code="attribute_name")
        return ATTRIBUTE_PREFIX + name

    def clean_external_field(self):
        value = self.cleaned_data["external_field"]
        connection_part, separator, name = value.partition(":")
        if not separator or not connection_part.isdigit() or not name:
            raise forms.ValidationError("Pick a field from the list of the system's fields.", code="external_field")
        self._external_connection = int(connection_part)
        return name

    def clean(self):
        cleaned = super().clean()
        connection_id = cleaned.get("connection")
        if (connection_id is None or "external_field" not in cleaned or "hub_field" not in cleaned
                or self.chain is None):
            return cleaned
        connection = self.connections[connection_id]
        if self._external_connection != connection_id:
            other = self.connections.get(self._external_connection)
            self.add_error("external_field", f"That field belongs to {other.name if other else 'another system'}: "
                                             f"pick one of {connection.name}'s fields.")
            return cleaned
        draft = self.draft(transforms=self.chain)
        catalog = self.catalogs.get(connection_id)
        findings = mapping_problems(draft, catalog=catalog, system=connection.name, siblings=self.siblings,
                                    system_names={pk: item.name for pk, item in self.connections.items()},
                                    role=self.roles.get(connection_id))
        for form_field, messages in findings.errors.items():
            target = form_field if form_field in self.fields else None
            for message in messages:
                self.add_error(target, message)
        self.warnings = findings.warnings
        self.catalog_field = next((item for item in catalog or () if item.name == draft.external_field), None)
        return cleaned

    def draft(self, *, transforms: list) -> MappingDraft:
        cleaned = self.cleaned_data
        return MappingDraft(
            connection_id=cleaned["connection"], hub_field=cleaned["hub_field"],
            external_field=cleaned["external_field"], direction=cleaned.get("direction") or "both",
            transforms=transforms, is_owner=cleaned.get("is_owner", False),
            conflict_policy=cleaned.get("conflict_policy") or "owner_wins", pk=self.mapping_pk,
        )


def _field_option(field: FieldInfo) -> str:
    notes = [field.kind]
    if field.calculated:
        notes.append("calculated")
    elif field.read_only:
        notes.append("read-only")
    if field.max_length:
        notes.append(f"max {field.max_length}")
    label = field.label if field.label != field.name else ""
    # Labels come from the system and may be very long: the option shows their start.
    shown = f"{field.name} · {label[:60]}{'…' if len(label) > 60 else ''}" if label else field.name
    return f"{shown} ({', '.join(notes)})"


class TransformForm(forms.Form):
    """One step of the chain: a transform, the way it applies, and its parameters."""

    name = forms.ChoiceField(required=False, label="Transform")
    applies = forms.ChoiceField(choices=APPLIES_CHOICES, initial=BOTH_WAYS, label="Applies")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["name"].choices = [("", "(none)"), *((name, transform_label(name)) for name in TRANSFORM_INFO)]
        self.param_groups: list[tuple[str, str, list[str]]] = []
        for name in TRANSFORM_INFO:
            names = []
            for param, info in transform_params(name):
                key = f"{name}__{param}"
                self.fields[key] = _param_field(param, info)
                names.append(key)
            self.param_groups.append((name, transform_label(name), names))

    def param_group_fields(self):
        """Yield (transform name, label, help, bound fields, hidden) per transform, for the template.

        Only the chosen transform's group is shown; the script switches groups as the
        choice changes, and without it "Update the chain" shows the new choice's.
        """
        chosen = self["name"].value()
        for name, label, names in self.param_groups:
            help_text = str(_get(TRANSFORM_INFO.get(name), "help", "") or "")
            yield name, label, help_text, [self[key] for key in names], name != chosen

    def clean(self):
        cleaned = super().clean()
        name = cleaned.get("name")
        if "applies" in self.errors:
            # A direction outside the choices (a tampered form): its own error says so.
            return cleaned
        if not name:
            return cleaned
        params = {}
        for param, _info in transform_params(name):
            value = cleaned.get(f"{name}__{param}")
            if value in (None, "", {}):
                continue
            params[param] = value
        spec: Any = name
        if params or cleaned.get("applies") != BOTH_WAYS:
            spec = {"name": name, **params}
            if cleaned.get("applies") != BOTH_WAYS:
                spec["direction"] = cleaned["applies"]
        cleaned["spec"] = spec
        return cleaned


class JSONObjectField(forms.CharField):
    """A value map typed one pair a line, "external = hub", kept as a {external: hub} object."""

    widget = forms.Textarea(attrs={"rows": 3})

    def prepare_value(self, value):
        if isinstance(value, Mapping):
            return "\n".join(f"{key} = {item}" for key, item in value.items())
        return value

    def to_python(self, value):
        text = super().to_python(value)
        if not text:
            return {}
        pairs = {}
        for line in text.splitlines():
            if not line.strip():
                continue
            key, separator, item = line.partition("=")
            if not separator or not key.strip():
                raise forms.ValidationError(f"Write each pair as 'external value = hub value'; {line[:80]!r} is not.",
                                            code="pair")
            pairs[key.strip()] = item.strip()
        return pairs


def _param_field(param: str, info: Any) -> forms.Field:
    label = str(_get(info, "label", param.replace("_", " ").capitalize()))
    help_text = str(_get(info, "help", "") or "")
    kind = _get(info, "kind", "text")
    choices = _get(info, "choices")
    if choices:
        pairs = [choice if isinstance(choice, list | tuple) else (choice, choice) for choice in choices]
        return forms.ChoiceField(required=False, choices=[("", "—"), *pairs], label=label, help_text=help_text)
    if kind in ("int", "integer", "number"):
        return forms.IntegerField(required=False, min_value=1, max_value=1_000_000, label=label, help_text=help_text)
    if kind in ("map", "mapping", "dict", "object"):
        return JSONObjectField(required=False, max_length=20_000, label=label, help_text=help_text)
    return forms.CharField(required=False, max_length=500, label=label, help_text=help_text, strip=False)


class BaseTransformFormSet(forms.BaseFormSet):
    def specs(self) -> list:
        """Return the chain as stored specs, ordered by the rows' order numbers."""
        rows = [form for form in self.ordered_forms if form.cleaned_data.get("spec") is not None
                and not form.cleaned_data.get("DELETE")]
        return [form.cleaned_data["spec"] for form in rows]


TransformFormSet = forms.formset_factory(
    TransformForm, formset=BaseTransformFormSet, extra=BLANK_TRANSFORM_ROWS, can_order=True, can_delete=True,
    max_num=MAX_TRANSFORMS, validate_max=True, absolute_max=MAX_TRANSFORMS + BLANK_TRANSFORM_ROWS,
)


def transform_initial(specs: Any) -> list[dict]:
    """Return formset initial rows for stored specs."""
    rows = []
    for spec in specs if isinstance(specs, list) else []:
        if isinstance(spec, str):
            rows.append({"name": spec, "applies": BOTH_WAYS})
        elif isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
            name = spec["name"]
            row = {"name": name, "applies": spec.get("direction") or BOTH_WAYS}
            for param, _info in transform_params(name):
                if param in spec:
                    row[f"{name}__{param}"] = spec[param]
            rows.append(row)
    return rows


class FieldCreateForm(forms.Form):
    """A new field in a system (a Mailchimp merge field), named and typed by the marketer."""

    label = forms.CharField(max_length=100, label="Field name")
    kind = forms.ChoiceField(choices=[(kind, kind) for kind in FIELD_KINDS], initial="text", label="Kind")
    for_hub_field = forms.CharField(required=False, max_length=100, widget=forms.HiddenInput)
