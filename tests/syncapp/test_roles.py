import pytest
from django.contrib.auth.models import Group

from syncapp.roles import COMPLIANCE, MARKETER, REVIEWER


@pytest.mark.django_db
def test_the_migration_creates_the_three_roles_with_permissions():
    marketer = Group.objects.get(name=MARKETER)
    assert marketer.permissions.filter(codename="change_connection").exists()
    assert marketer.permissions.filter(codename="add_fieldmapping").exists()
    assert Group.objects.get(name=REVIEWER).permissions.filter(codename="view_contact").exists()
    compliance = Group.objects.get(name=COMPLIANCE)
    assert compliance.permissions.filter(codename="view_auditevent").exists()
    assert not compliance.permissions.filter(codename="change_connection").exists()


@pytest.mark.django_db(transaction=True)
def test_the_roles_come_back_after_a_flush():
    from django.core.management import call_command

    call_command("flush", interactive=False, verbosity=0)
    assert set(Group.objects.values_list("name", flat=True)) >= {MARKETER, REVIEWER, COMPLIANCE}
    assert Group.objects.get(name=MARKETER).permissions.filter(codename="change_connection").exists()


@pytest.mark.django_db
def test_reviewers_decide_conflicts_and_duplicates_which_others_may_only_view():
    def codenames(role):
        return set(Group.objects.get(name=role).permissions.values_list("codename", flat=True))

    assert {"view_conflict", "change_conflict", "view_duplicatepair", "change_duplicatepair"} <= codenames(REVIEWER)
    assert "delete_conflict" not in codenames(REVIEWER)
    for role in (MARKETER, COMPLIANCE):
        assert "view_conflict" in codenames(role)
        assert not codenames(role) & {"add_conflict", "change_conflict", "delete_conflict"}
