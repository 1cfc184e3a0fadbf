"""`manage.py sandbox`: its options, and the test helper that starts it."""
import pytest
from django.core.management import CommandError, call_command

from sandbox.app import DATABASE_NAME
from sandbox.launcher import SandboxProcess, SandboxStartError


@pytest.mark.parametrize("options, complaint", [
    (["--addr", "8765"], "HOST:PORT"),
    (["--addr", "127.0.0.1:99999"], "HOST:PORT"),
    (["--mailchimp-key", "no-datacenter"], "-<datacenter>"),
    (["--hubspot-token", " "], "HubSpot token"),
    (["--hubspot-rate-limit", "-5"], "negative"),
    (["--hubspot-search-rate-limit", "-1"], "negative"),
    (["--hubspot-batch-subscription-scopes", "2"], "1 \\(granted\\) or 0"),
    (["--threads", "0"], "--threads"),
    (["--activecampaign-rate-limit", "-1"], "negative"),
    (["--activecampaign-token", ""], "ActiveCampaign token"),
    (["--activecampaign-timezone", "Nowhere/Town"], "time zone"),
])
def test_bad_options_stop_the_command_with_a_clear_error(tmp_path, options, complaint):
    with pytest.raises(CommandError, match=complaint):
        call_command("sandbox", "--data-dir", str(tmp_path), *options)


@pytest.mark.parametrize("make_data_dir, complaint", [
    # A parent that is a file: as unusable as one the user may not write to.
    (lambda tmp: tmp / "a-file" / "sandbox", "Not a directory"),
    (lambda tmp: tmp / "a-file", "File exists"),
    (lambda tmp: tmp / "corrupt", "file is not a database"),
])
def test_a_data_dir_that_cannot_hold_the_database_is_a_clear_error(tmp_path, make_data_dir, complaint):
    (tmp_path / "a-file").write_text("not a directory")
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / DATABASE_NAME).write_bytes(b"not a database" * 100)
    data_dir = make_data_dir(tmp_path)

    with pytest.raises(CommandError, match=f"cannot use --data-dir {data_dir}: .*{complaint}") as caught:
        call_command("sandbox", "--data-dir", str(data_dir), "--addr", "127.0.0.1:0")
    assert "\n" not in str(caught.value)


def test_an_address_in_use_is_a_clear_error(tmp_path, sandbox_process):
    taken = sandbox_process.url.removeprefix("http://")
    with pytest.raises(CommandError, match="cannot listen"):
        call_command("sandbox", "--data-dir", str(tmp_path), "--addr", taken)


@pytest.mark.integration
def test_the_helper_reports_a_sandbox_that_does_not_start_with_its_stderr():
    with pytest.raises(SandboxStartError, match="-<datacenter>") as failure:
        SandboxProcess.start("--mailchimp-key", "broken")
    assert "did not start" in str(failure.value)


@pytest.mark.integration
def test_a_second_sandbox_runs_on_its_own_port_and_data(sandbox_process):
    other = SandboxProcess.start("--threads", "2")
    try:
        assert other.url != sandbox_process.url
        other.seed(hubspot_contacts=3)
        assert len(other.hubspot_contacts()) == 3
    finally:
        other.stop()
    assert other.process.returncode is not None
