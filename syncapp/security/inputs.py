"""URL converters and form fields that refuse out-of-range input as bad input, not with a 500.

Django hands an id or a JSON value to the database as typed: SQLite raises OverflowError
for an integer past 64 bits, and both databases refuse NaN and Infinity in a JSON column.
These check the value first and answer with a 404 or a form error.
"""
from __future__ import annotations

import json

from django import forms
from django.core.exceptions import ValidationError
from django.db import connections, models
from django.forms.fields import InvalidJSONInput

# The largest id a BigAutoField (every table of this project) can hold.
ID_MAX = 2**63 - 1


class IdConverter:
    """A database id in a URL: digits, no larger than an id can be; anything else is a 404."""

    regex = "[0-9]+"

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > ID_MAX:
            # A ValueError tells the resolver that the path does not match.
            raise ValueError(f"{value} is larger than any id")
        return number

    def to_url(self, value: int) -> str:
        return str(value)


def _integer_range(field: models.Field, using: str) -> tuple[int | None, int | None]:
    if not isinstance(field, models.IntegerField):
        return None, None
    return connections[using].ops.integer_field_range(field.get_internal_type())


def _fits(value, low: int | None, high: int | None) -> bool:
    try:
        number = int(str(value).strip())
    except ValueError:
        # Not a number at all: the field's own check refuses it.
        return True
    return (low is None or number >= low) and (high is None or number <= high)


class BoundedModelMultipleChoiceField(forms.ModelMultipleChoiceField):
    """A ModelMultipleChoiceField that refuses ids out of the column's range before querying."""

    def _check_values(self, value):
        options = self.queryset.model._meta
        key_field = options.get_field(self.to_field_name) if self.to_field_name else options.pk
        low, high = _integer_range(key_field, self.queryset.db)
        if isinstance(value, (list, tuple)):
            for choice in value:
                if not _fits(choice, low, high):
                    raise ValidationError(
                        self.error_messages["invalid_choice"], code="invalid_choice", params={"value": choice}
                    )
        return super()._check_values(value)


class JSONInputField(forms.JSONField):
    """A JSONField that refuses what no database stores: NaN, Infinity, and nesting past Python's stack."""

    default_error_messages = {
        "not_finite": "Numbers must be finite: NaN and Infinity are not JSON.",
    }

    def to_python(self, value):
        try:
            converted = super().to_python(value)
            json.dumps(converted, allow_nan=False, cls=self.encoder)
        except RecursionError:
            raise ValidationError(self.error_messages["invalid"], code="invalid", params={"value": value}) from None
        except ValueError:
            raise ValidationError(self.error_messages["not_finite"], code="not_finite") from None
        return converted

    def bound_data(self, data, initial):
        try:
            return super().bound_data(data, initial)
        except RecursionError:
            # Shown back as typed, like any other input that is not JSON.
            return InvalidJSONInput(data)
