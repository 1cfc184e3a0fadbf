"""Admin lists and their filters for tables of millions of rows."""
from django.contrib import admin

from syncapp.pagination import CappedCountPaginator, distinct_values


class LargeTableAdminMixin:
    """An admin list that never counts or facets a whole table: counts stop at a cap."""

    paginator = CappedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER


class IndexedValuesListFilter(admin.AllValuesFieldListFilter):
    """Django's filter by every value a column holds, found by skipping through an index on the column.

    The stock filter runs SELECT DISTINCT over the whole table on every page of the list.
    Needs an index that starts with the column; lists every value the table holds.
    """

    def __init__(self, field, request, params, model, model_admin, field_path):
        super().__init__(field, request, params, model, model_admin, field_path)
        self.lookup_choices = distinct_values(model, field_path)


class ExactSearchMixin:
    """The admin's search box as one exact match on `exact_search_field`, which an index serves.

    The stock search is a substring match (`icontains`) on every search field: a scan of
    the table. The field must also be named in `search_fields` for the box to show.
    """

    exact_search_field: str

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(**{self.exact_search_field: term}), False
