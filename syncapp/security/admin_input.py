"""The admin answers bad filters and ids with its "invalid filter" page or a form error, never a 500.

An admin list may be filtered from the query string by any lookup on the model's own
fields (`?started_at__year=99999999`, `?id__in=1,99999999999999999999`,
`?name__regex=(`). Django turns the errors raised while such a filter is built into its
"invalid lookup" redirect, but not those raised when the database runs it: a year past
9999, an integer past 64 bits on SQLite, a broken regular expression, a JSON lookup the
database lacks. Its multiple-choice fields likewise send every id to the database as given,
and its JSON fields accept NaN and Infinity, which no database stores.
"""
from __future__ import annotations

from contextlib import nullcontext

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connections, models, transaction
from django.forms.models import BaseInlineFormSet

from syncapp.security.inputs import BoundedModelMultipleChoiceField, JSONInputField


class BoundedChangeList(ChangeList):
    """A change list whose filters, when the database refuses them, are reported as invalid."""

    def get_results(self, request):
        using = self.queryset.db
        # Inside a transaction (ATOMIC_REQUESTS, tests) a refused query must not leave it
        # unusable on PostgreSQL: roll back to a savepoint. Outside one there is nothing to
        # protect, and opening a transaction would take SQLite's write lock for a read.
        guard = transaction.atomic(using=using) if connections[using].in_atomic_block else nullcontext()
        try:
            with guard:
                super().get_results(request)
        except (ValueError, OverflowError, DatabaseError) as error:
            raise IncorrectLookupParameters(error) from error


class BadInputRefusedMixin:
    """Bounded lists, id fields and JSON fields for a ModelAdmin."""

    def get_changelist(self, request, **kwargs):
        return BoundedChangeList

    def get_object(self, request, object_id, from_field=None):
        # PostgreSQL refuses NUL in text, and a text primary key (django-q2's tasks) is
        # looked up as typed; Django catches only the errors of converting the id.
        if "\x00" in str(object_id):
            return None
        return super().get_object(request, object_id, from_field)

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if isinstance(db_field, models.JSONField):
            kwargs.setdefault("form_class", JSONInputField)
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        kwargs.setdefault("form_class", BoundedModelMultipleChoiceField)
        return super().formfield_for_manytomany(db_field, request, **kwargs)


class ConstraintCheckedInlineFormSet(BaseInlineFormSet):
    """Check each row to be saved against the model's constraints, those on the parent's key too.

    A ModelForm skips constraints that involve a field it excludes, and an inline form
    excludes the key to its parent: a row that repeats a stored one (sync, connection)
    passed the form and failed in the service, as a 500.
    """

    def clean(self):
        super().clean()
        for form in self.forms:
            if form in self.deleted_forms or not form.is_valid() or not form.has_changed():
                continue
            try:
                form.instance.validate_constraints()
            except ValidationError as error:
                form.add_error(None, error)


class CheckedInlineMixin:
    """Inline rows checked before anything is saved: at most `max_num` of them, each against the constraints.

    Django builds as many forms as a formset's TOTAL_FORMS says, up to max_num + 1000: a
    thousand forms take seconds to validate and to render again.
    """

    formset = ConstraintCheckedInlineFormSet

    def get_formset(self, request, obj=None, **kwargs):
        kwargs.setdefault("absolute_max", self.max_num)
        return super().get_formset(request, obj, **kwargs)


def admin_site_refuse_bad_input(site: admin.AdminSite) -> None:
    """Re-register every model admin of `site` (Django's and django-q2's too) with BadInputRefusedMixin.

    Call it once every app's admin module has registered its models.
    """
    for model, model_admin in list(site._registry.items()):
        admin_class = type(model_admin)
        if issubclass(admin_class, BadInputRefusedMixin):
            continue
        site.unregister(model)
        site.register(model, type(admin_class.__name__, (BadInputRefusedMixin, admin_class), {}))
