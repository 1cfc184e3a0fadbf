"""Never-overwrite-with-empty holds after the outbound transforms, not only before them."""
import pytest

from mappings.models import FieldMapping
from syncapp.models import SyncRun
from syncapp.services.runs import run_execute, run_request
from tests.syncapp.fake_providers import World, fake_workspace

pytestmark = pytest.mark.django_db


def execute(sync, world):
    run, _ = run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL, enqueue=False)
    return run_execute(run_id=run.pk, provider_for=world.provider_for)


def test_a_value_the_outbound_chain_empties_does_not_overwrite_a_stored_one():
    world = World(page_size=10)
    sync = fake_workspace()
    FieldMapping.objects.filter(external_field="firstname").update(transforms=[])
    world.add("1", email="ann@example.com", firstname="Ann")
    execute(sync, world)
    assert world.members["ann@example.com"]["FNAME"] == "Ann"

    # The hub takes "   "; trim makes it "" on the way out, which must not replace "Ann".
    world.add("1", email="ann@example.com", firstname="   ")
    FieldMapping.objects.filter(external_field="FNAME").update(transforms=["trim"], never_overwrite_with_empty=True)
    execute(sync, world)
    assert world.members["ann@example.com"]["FNAME"] == "Ann"
