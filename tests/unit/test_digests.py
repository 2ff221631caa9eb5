"""Keyed digests of container environment values: the key's sources, the per-install key file,
specs that digest on validation, ECS secrets, and what the cycle page and the CLI show."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from reconciler import digests
from reconciler.catalogue.aws import EcsContainerSpec
from reconciler.core.model import Diff, FieldChange, Modification, ObservedResource, ResourceKey
from reconciler.digests import digest, is_digest, keep_clear
from reconciler.providers.aws import logscrub

KEY = "k" * 32


@pytest.fixture(autouse=True)
def _own_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RECONCILER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(digests.KEY_ENV, raising=False)
    monkeypatch.setattr(digests, "_sources", [])
    return tmp_path / "home"


def test_a_digest_is_a_keyed_prefix_of_hmac_sha256_and_is_left_as_it_is() -> None:
    import hashlib
    import hmac

    want = "hmac:" + hmac.new(KEY.encode(), b"s3cret", hashlib.sha256).hexdigest()[:16]
    assert digest("s3cret", KEY.encode()) == want
    assert digest(want, b"another key entirely") == want
    assert digest("s3cret", b"x" * 32) != want
    assert is_digest(want) and not is_digest("s3cret") and not is_digest(None)


def test_the_environment_key_comes_first(monkeypatch: pytest.MonkeyPatch, _own_home: Path) -> None:
    digests.register_key_source(lambda: "from-a-registered-source-xx")
    monkeypatch.setenv(digests.KEY_ENV, KEY)
    assert digests.digest_key() == KEY.encode()
    assert not (_own_home / digests.KEY_FILE).exists()


def test_a_registered_source_comes_before_the_install_file(_own_home: Path) -> None:
    digests.register_key_source(lambda: "from-a-registered-source-xx")
    assert digests.digest_key() == b"from-a-registered-source-xx"
    assert not (_own_home / digests.KEY_FILE).exists()


def test_a_short_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(digests.KEY_ENV, "short")
    with pytest.raises(ValueError, match="shorter than 16"):
        digests.digest_key()


def test_without_a_key_one_is_made_once_mode_0600_and_reused(_own_home: Path) -> None:
    first = digests.digest_key()
    path = _own_home / digests.KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 32
    digests._cache.clear()
    assert digests.digest_key() == first  # read back, not made again
    assert [p.name for p in _own_home.iterdir()] == [digests.KEY_FILE]  # no temp file left


def test_a_key_file_readable_by_others_is_tightened(_own_home: Path) -> None:
    _own_home.mkdir(parents=True)
    path = _own_home / digests.KEY_FILE
    path.write_text(KEY + "\n")
    path.chmod(0o644)
    assert digests.digest_key() == KEY.encode()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_container_spec_keeps_digests_only_unless_asked_to_keep_clear() -> None:
    raw = {"name": "web", "image": "x", "environment": {"TOKEN": "s3cret"}}
    assert EcsContainerSpec.model_validate(raw).environment == {"TOKEN": digest("s3cret")}
    with keep_clear():
        assert EcsContainerSpec.model_validate(raw).environment == {"TOKEN": "s3cret"}
    assert EcsContainerSpec.model_validate(raw).environment["TOKEN"] != "s3cret"


def test_secrets_are_sorted_pointers_kept_in_clear_and_never_doubled() -> None:
    spec = EcsContainerSpec.model_validate({"name": "web", "image": "x", "secrets": [
        {"name": "B", "value_from": "arn:aws:ssm:::parameter/b"},
        {"name": "A", "value_from": "arn:aws:secretsmanager:::secret:a"}]})
    assert [s.name for s in spec.secrets or ()] == ["A", "B"]
    assert spec.model_dump()["secrets"][0]["value_from"] == "arn:aws:secretsmanager:::secret:a"
    assert "secrets" not in EcsContainerSpec(name="web", image="x").model_dump()
    with pytest.raises(ValidationError, match="unique"):
        EcsContainerSpec.model_validate({"name": "w", "image": "x", "secrets": [
            {"name": "A", "value_from": "p1"}, {"name": "A", "value_from": "p2"}]})
    with pytest.raises(ValidationError, match="both environment and secrets"):
        EcsContainerSpec.model_validate({"name": "w", "image": "x", "environment": {"A": "v"},
                                         "secrets": [{"name": "A", "value_from": "p1"}]})


def _diff_with(change: FieldChange) -> Diff:
    key = ResourceKey(kind="ecs.Service", name="api")
    from reconciler.core.model import DesiredResource

    return Diff(modifications=(Modification(
        key=key, changes=(change,), desired=DesiredResource(key=key, spec={}),
        observed=ObservedResource(key=key, spec={})),))


def test_the_cli_says_changed_for_a_secret_value_and_shows_other_values() -> None:
    from reconciler.output.render import render_diff

    secret = FieldChange(path="containers.web.environment.TOKEN", before=digest("a"),
                         after=digest("b"))
    assert render_diff(_diff_with(secret)) == [
        "  ~ ecs.Service/api  (containers.web.environment.TOKEN: changed)"]
    plain = FieldChange(path="desired_count", before=1, after=2)
    assert "desired_count: 1 -> 2" in render_diff(_diff_with(plain))[0]


def test_the_cycle_page_hides_digests_wherever_they_are() -> None:
    from reconciler_airflow.ui.data import _diff_view

    d = digest("a")
    view = _diff_view({
        "additions": [{"key": {"kind": "ecs.Service", "name": "new"},
                       "spec": {"containers": [{"environment": {"T": d}}]}}],
        "modifications": [{"key": {"kind": "ecs.Service", "name": "api"}, "changes": [
            {"path": "containers.web.environment.T", "before": d, "after": digest("b")},
            {"path": "containers", "before": [{"environment": {"T": d}}], "after": []}]}]})
    assert d not in repr(view)
    assert view["modifications"][0]["changes"][0] == {"path": "containers.web.environment.T",
                                                      "secret": True}
    assert view["additions"][0]["spec"] == {"containers": [{"environment": {"T": "(hidden)"}}]}


def test_botocore_bodies_holding_task_definitions_are_withheld(
        caplog: pytest.LogCaptureFixture) -> None:
    logscrub.install()
    log = logging.getLogger("botocore.endpoint")
    with caplog.at_level(logging.DEBUG, logger="botocore.endpoint"):
        log.debug("Making request with params: %s", {"containerDefinitions": [{"v": "s3cret"}]})
        log.debug("Making request with params: %s", {"cluster": "apps"})
    assert "s3cret" not in caplog.text and logscrub.WITHHELD in caplog.text
    assert "'cluster': 'apps'" in caplog.text
