"""Targets config: the demo config loads; bad targets are located; one bad target hides no other."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from reconciler.config import (
    ProviderConfig,
    TargetConfig,
    config_path,
    load_config,
    load_config_lenient,
    reconciler_home,
    resolve_desired,
    schedule_problem,
)
from reconciler.core.errors import InvalidConfig
from reconciler.desired import load_desired_dir

CORPUS = Path(__file__).parents[1] / "corpus" / "config"
REPO_CONFIG = Path(__file__).parents[2] / "include" / "config" / "targets.yaml"
ENV = {"RECONCILER_HOME": "/srv/reconciler", "AIRFLOW__API_AUTH__JWT_SECRET": "s3cr3t"}

# corpus file -> (line, field substring, message substring) of a problem that must be reported
EXPECTED: dict[str, tuple[int | None, str, str]] = {
    "bad_target_name.yaml": (2, "targets.Prod-EU", "target name 'Prod-EU'"),
    "bad_cron.yaml": (5, "targets.prod.schedule", "cron minute field '61'"),
    "bad_interval.yaml": (5, "targets.prod.schedule", "neither a 5-field cron"),
    "unknown_provider.yaml": (4, "targets.prod.provider.type", "'simulated' or 'aws'"),
    "unknown_policy_field.yaml": (7, "targets.prod.policy.max_paralel", "unknown field"),
    "policy_out_of_range.yaml": (7, "targets.prod.policy.max_parallel", "greater than or equal"),
    "missing_desired.yaml": (2, "targets.prod.desired", "field required"),
    "unset_env_var.yaml": (6, "provider.options.state", "RECONCILER_TEST_UNSET_VAR is not set"),
    "unknown_target_field.yaml": (5, "targets.prod.schedule_interval", "unknown field"),
    "syntax_error.yaml": (4, "", "YAML syntax error"),
    "duplicate_target.yaml": (5, "targets.prod", "duplicate key 'prod'"),
    "unknown_top_level_key.yaml": (5, "defaults", "unknown top-level key"),
    "bad_desired_scheme.yaml": (4, "targets.prod.desired", "s3://"),
    "targets_not_mapping.yaml": (1, "targets", "must map target names"),
    "empty.yaml": (None, "", "expected a mapping with a 'targets' key"),
    "deep_nesting.yaml": (6, "targets.prod.provider.options.deep[0]", "nested deeper than 64"),
    "alias_bomb.yaml": (11, "targets.prod.provider.options.l5", "aliases expand to over"),
    "target_not_mapping.yaml": (2, "targets.prod", "a target must be a mapping"),
    "schedule_six_fields.yaml": (5, "targets.prod.schedule", "neither a 5-field cron"),
    # outgoing calls: checked when loaded, not at the first alert
    "webhook_http.yaml": (6, "targets.prod.alerts.webhook", "only https URLs"),
    "webhook_not_a_url.yaml": (6, "targets.prod.alerts.webhook", "a webhook is a URL like"),
    "webhook_env_not_allowed.yaml": (
        6,
        "targets.prod.alerts.webhook",
        "${AIRFLOW__API_AUTH__JWT_SECRET} may not be expanded",
    ),
    "artifacts_env_not_allowed.yaml": (5, "targets.prod.artifacts", "${HOME} may not be expanded"),
    "env_name_invalid.yaml": (5, "targets.prod.env[0]", "not an environment variable name"),
    "smtp_to_not_an_address.yaml": (6, "targets.prod.alerts.smtp_to[0]", "not an email address"),
    # secrets never written in the file itself
    "credential_in_clear.yaml": (
        8,
        "provider.options.secret_access_key",
        "a credential is never written in the targets file",
    ),
    # provider options: located here, never a crash when the provider is built
    "aws_bad_region.yaml": (5, "targets.prod.provider.options.region", "not a region name"),
    "aws_region_and_regions.yaml": (5, "targets.prod.provider.options", "set one, not both"),
    "aws_regions_duplicate.yaml": (6, "provider.options.regions", "us-east-1 named twice"),
    "aws_unknown_kind.yaml": (6, "provider.options.kinds", "unknown kinds 'rds.DBInstance'"),
    "aws_unknown_option.yaml": (7, "provider.options.endpoint", "unknown field 'endpoint'"),
    "aws_bad_rate_limit.yaml": (
        6,
        "options.rate_limits.ec2.RunInstances",
        "greater than or equal to 0 (got -1)",
    ),
    "simulated_unknown_option.yaml": (5, "provider.options.latency", "unknown field 'latency'"),
    "simulated_bad_fault.yaml": (6, "options.faults.failure_rate", "less than or equal to 1"),
    # desired state in S3
    "s3_bad_bucket.yaml": (4, "targets.prod.desired", "bucket 'Fleet_Desired': S3 bucket names"),
    "s3_no_bucket.yaml": (4, "targets.prod.desired", "bucket '': S3 bucket names"),
    "s3_version_in_uri.yaml": (4, "targets.prod.desired", "desired_version run parameter"),
    # policy
    "policy_bool_as_int.yaml": (6, "targets.prod.policy.max_parallel", "valid integer (got True)"),
    "policy_string_number.yaml": (6, "policy.max_delete_fraction", "valid number"),
    "backoff_cap_below_base.yaml": (5, "targets.prod.policy", "backoff_cap_s must be >="),
    "window_hour_out_of_range.yaml": (7, "policy.windows[0].end_hour", "less than or equal to 24"),
    "auto_apply_unknown_urgency.yaml": (6, "policy.auto_apply[1]", "'none', 'low', 'high' or"),
    "ignore_fields_unknown_kind.yaml": (7, "policy.ignore_fields.sim.Workloads", "unknown kind"),
    "ignore_fields_unknown_field.yaml": (
        7,
        "policy.ignore_fields.sim.Workload[0]",
        "'replica' is not a field of sim.Workload",
    ),
    # Airflow
    "approvers_unknown_role.yaml": (6, "airflow.approvers.roles[0]", "'viewer', 'user', 'op'"),
    "retries_below_minimum.yaml": (6, "targets.prod.airflow.retries", "greater than or equal to 2"),
}
# values that must appear in no message (they stand for secrets)
NEVER_SHOWN = {
    "credential_in_clear.yaml": "bPxRfiCYEXAMPLEKEY",
    "webhook_env_not_allowed.yaml": "s3cr3t",
}

GOOD = """\
targets:
  good:
    provider: {type: simulated, options: {state: "${RECONCILER_HOME}/good.db"}}
    desired: desired/good
    schedule: 10m
"""


def write(folder: Path, text: str) -> Path:
    path = folder / "targets.yaml"
    path.write_text(text)
    return path


def test_every_corpus_file_has_an_expectation() -> None:
    assert sorted(p.name for p in CORPUS.iterdir()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_bad_config_is_rejected_naming_its_file_line_and_field(name: str) -> None:
    line, field, message = EXPECTED[name]
    with pytest.raises(InvalidConfig) as caught:
        load_config(CORPUS / name, env=ENV)
    file = str((CORPUS / name).resolve())
    assert any(
        loc.file == file and loc.line == line and field in (loc.field or "") and message in text
        for loc, text in caught.value.problems
    ), caught.value.problems
    assert NEVER_SHOWN.get(name, "\0") not in str(caught.value)


def test_the_repository_config_loads_and_its_demo_desired_state_too() -> None:
    config = load_config(REPO_CONFIG, env=ENV)
    demo = config.targets["demo"]
    assert demo.provider == ProviderConfig(
        type="simulated", options={"state": "/srv/reconciler/demo-sim.db"}
    )
    assert demo.artifacts == "/srv/reconciler/artifacts/demo"
    assert demo.policy.max_parallel == 4 and demo.schedule == "*/5 * * * *"
    assert config.path == str(REPO_CONFIG.resolve())
    desired = resolve_desired(demo, config.path)
    assert desired == str(REPO_CONFIG.parents[1] / "desired" / "demo")
    assert len(load_desired_dir(desired).resources) == 8


def test_reconciler_home_defaults_to_a_dot_folder_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RECONCILER_HOME", raising=False)
    assert reconciler_home() == tmp_path / ".reconciler"
    config = load_config(write(tmp_path, GOOD), env={})
    assert config.targets["good"].provider.options["state"] == f"{tmp_path}/.reconciler/good.db"
    monkeypatch.setenv("RECONCILER_HOME", "/elsewhere")
    assert reconciler_home() == Path("/elsewhere")


def test_other_variables_expand_only_when_the_target_lists_them(tmp_path: Path) -> None:
    text = GOOD + "    artifacts: s3://${BUCKET}/artifacts/\n"
    with pytest.raises(InvalidConfig, match=r"artifacts: \$\{BUCKET\} may not be expanded"):
        load_config(write(tmp_path, text), env={"BUCKET": "fleet", **ENV})
    listed = text + "    env: [BUCKET]\n"
    config = load_config(write(tmp_path, listed), env={"BUCKET": "fleet", **ENV})
    assert config.targets["good"].artifacts == "s3://fleet/artifacts/"


def test_a_secret_of_the_process_never_expands_into_a_config_value(tmp_path: Path) -> None:
    text = GOOD + "    artifacts: s3://x/${AIRFLOW__API_AUTH__JWT_SECRET}/\n"
    env = {"AIRFLOW__API_AUTH__JWT_SECRET": "s3cr3t", **ENV}
    with pytest.raises(InvalidConfig) as raised:
        load_config(write(tmp_path, text), env=env)
    assert "s3cr3t" not in str(raised.value) and "may not be expanded" in str(raised.value)


def test_config_path_prefers_the_argument_then_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RECONCILER_CONFIG", raising=False)
    assert config_path() == REPO_CONFIG
    monkeypatch.setenv("RECONCILER_CONFIG", "/etc/reconciler/targets.yaml")
    assert config_path() == Path("/etc/reconciler/targets.yaml")
    assert config_path("mine.yaml") == Path("mine.yaml")


def test_resolve_desired_keeps_s3_and_absolute_paths(tmp_path: Path) -> None:
    def target(desired: str) -> TargetConfig:
        return TargetConfig(name="t", provider=ProviderConfig(type="aws"), desired=desired)

    config = tmp_path / "conf" / "targets.yaml"
    assert resolve_desired(target("s3://bucket/prefix/"), config) == "s3://bucket/prefix/"
    assert resolve_desired(target("/abs/desired"), config) == "/abs/desired"
    assert resolve_desired(target("../desired"), config) == str(tmp_path / "desired")


def test_lenient_loading_keeps_the_good_targets_and_explains_the_bad(tmp_path: Path) -> None:
    text = GOOD + (
        "  bad_policy:\n    provider: {type: simulated}\n    desired: d\n"
        "    policy: {max_parallel: 0}\n"
        "  Bad-Name:\n    provider: {type: simulated}\n    desired: d\n"
        "  also_good:\n    provider: {type: aws}\n    desired: s3://fleet/p/\n    schedule: null\n"
    )
    config, errors = load_config_lenient(write(tmp_path, text), env=ENV)
    assert list(config.targets) == ["good", "also_good"]
    assert sorted(errors) == ["Bad-Name", "bad_policy"]
    assert ":9: targets.bad_policy.policy.max_parallel" in errors["bad_policy"]
    with pytest.raises(InvalidConfig):
        load_config(write(tmp_path, text), env=ENV)


def test_lenient_loading_still_raises_when_the_file_itself_is_unusable() -> None:
    with pytest.raises(InvalidConfig):
        load_config_lenient(CORPUS / "syntax_error.yaml", env=ENV)


def test_a_duplicate_target_is_dropped_by_lenient_loading() -> None:
    config, errors = load_config_lenient(CORPUS / "duplicate_target.yaml", env=ENV)
    assert config.targets == {} and "duplicate key" in errors["prod"]


def test_an_empty_targets_mapping_is_a_valid_config(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "targets: {}\n"), env=ENV).targets == {}


def test_a_missing_config_file_is_an_invalid_config(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig, match="cannot read"):
        load_config(tmp_path / "nope.yaml", env=ENV)


@pytest.mark.parametrize(
    "schedule",
    [
        "*/5 * * * *",
        "0 3 * * 1-5",
        "15,45 */2 1 jan-jun mon",
        "0 0 1 * 0",
        "30s",
        "10m",
        "1h",
        "7d",
        "@daily",
        "0 0 * * 7",
        "5-30/5 * * * *",
    ],
)
def test_valid_schedules_are_accepted(schedule: str) -> None:
    assert schedule_problem(schedule) is None


@pytest.mark.parametrize(
    "schedule",
    [
        "",
        "10",
        "0m",
        "10 m",
        "* * * *",
        "* * * * * *",
        "60 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * * 13 *",
        "* * * * 8",
        "*/0 * * * *",
        "5-1 * * * *",
        "* * * foo *",
        "@reboot",
        "1,,2 * * * *",
    ],
)
def test_invalid_schedules_are_rejected(schedule: str) -> None:
    assert schedule_problem(schedule) is not None


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("60 * * * *", "cron minute field '60' is invalid: out of range (allowed 0-59)"),
        ("* * * foo *", "cron month field 'foo' is invalid: not a number, name, range or step"),
        ("0 3 * * 1-9", "cron day of week field '1-9' is invalid: out of range"),
        ("*/0 * * * *", "cron minute field '*/0' is invalid: step '0'"),
        ("50-10 * * * *", "cron minute field '50-10' is invalid: range 50-10 runs backwards"),
    ],
)
def test_a_bad_cron_names_the_field_and_what_is_wrong(schedule: str, message: str) -> None:
    assert (schedule_problem(schedule) or "").startswith(message)


@pytest.mark.parametrize("schedule", ["0 0 L * *", "0 9 * * 1#1", "0 0 ? * *", "0 0 * * fri-mon"])
def test_croniter_extensions_airflow_accepts_are_accepted(schedule: str) -> None:
    assert schedule_problem(schedule) is None


def test_config_models_are_frozen_and_forbid_unknown_fields() -> None:
    target = TargetConfig(name="t", provider=ProviderConfig(type="aws"), desired="d")
    with pytest.raises(ValidationError):
        target.name = "u"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        ProviderConfig(type="aws", region="x")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        TargetConfig(name="Bad", provider=ProviderConfig(type="aws"), desired="d")
