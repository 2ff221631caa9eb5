"""Several AWS accounts in one target: options (and their located errors), places and their
kinds, deletions blocked per account, and the caller's IAM policy."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.catalogue import kind_def, rules_for, split_region
from reconciler.core.errors import InvalidConfig, InvalidDesiredState
from reconciler.core.kinds import scope_label
from reconciler.core.model import ResourceKey
from reconciler.desired import load_desired_dir
from reconciler.orchestration.runtime import check_kinds, load_target
from reconciler.providers.aws import AwsProvider, MultiRegionAwsProvider, aws_provider
from reconciler.providers.aws.iam import caller_policy, policy
from reconciler.providers.aws.session import parse_options, places

NOW = datetime(2026, 1, 1, tzinfo=UTC)
A, B = "123456789012", "111111111111"
ROLE_B = f"arn:aws:iam::{B}:role/reconciler"
BASE = {"emulator": True, "endpoint_url": "http://127.0.0.1:9", "kinds": ["ec2.Instance"]}
TWO = {
    **BASE,
    "accounts": [{"id": A}, {"id": B, "role_arn": ROLE_B, "regions": ["us-east-1", "eu-west-1"]}],
}


@pytest.mark.parametrize(
    ("account", "message"),
    [
        ({"id": 111111111111}, "accounts[0].id: quote the account id"),
        ({"id": "11111111111"}, "accounts[0].id: an AWS account id is 12 digits"),
        ({"id": B, "role_arn": "reconciler"}, "'reconciler' is not an IAM role ARN"),
        ({"id": B, "role_arn": "arn:aws:iam::1111:role/x"}, "is not an IAM role ARN"),
        ({"id": B, "role_arn": "arn:aws:iam::111111111111:user/x"}, "is not an IAM role ARN"),
        (
            {"id": B, "role_arn": f"arn:aws:iam::{A}:role/x"},
            f"accounts[0].role_arn: a role of account {A}, not of this entry's id {B}",
        ),
        ({"id": B, "external_id": "abc"}, "external_id is sent when assuming role_arn"),
        ({"id": B, "role_arn": ROLE_B, "external_id": "a"}, "an external id is 2-1224"),
        ({"id": B, "regions": ["Europe"]}, "accounts[0].regions: 'Europe': not a region name"),
        ({"id": B, "role": ROLE_B}, "accounts[0].role: unknown field 'role'"),
    ],
)
def test_a_bad_account_is_rejected_with_its_field_and_reason(
    account: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidConfig) as err:
        parse_options({"accounts": [account]})
    assert message in str(err.value)


def test_accounts_must_be_named_once_and_not_be_empty() -> None:
    with pytest.raises(InvalidConfig, match=f"account {B} named twice"):
        parse_options({"accounts": [{"id": B}, {"id": B, "role_arn": ROLE_B}]})
    with pytest.raises(InvalidConfig, match="name at least one account"):
        parse_options({"accounts": []})


def test_role_paths_partitions_and_a_session_name_are_accepted() -> None:
    opts = parse_options(
        {
            "role_session_name": "ops@example.com",
            "accounts": [
                {
                    "id": B,
                    "role_arn": f"arn:aws:iam::{B}:role/team/ops/reconciler-1",
                    "external_id": "x-1:2/3",
                },
                {"id": "000000000042", "role_arn": "arn:aws-us-gov:iam::000000000042:role/r"},
            ],
        }
    )
    assert [a.id for a in opts.accounts or ()] == [B, "000000000042"]
    assert "x-1:2/3" not in repr(opts)  # the external id is never shown
    with pytest.raises(InvalidConfig, match="role session name"):
        parse_options({"role_session_name": "a b"})


def test_the_first_account_keeps_the_plain_kinds_a_further_one_names_account_and_region() -> None:
    found = [
        (p.account.id if p.account else None, p.region, p.scope)
        for p in places(parse_options({**TWO, "regions": ["us-east-1", "ap-south-1"]}))
    ]
    assert found == [
        (A, "us-east-1", None),
        (A, "ap-south-1", "ap-south-1"),
        (B, "us-east-1", f"{B}:us-east-1"),
        (B, "eu-west-1", f"{B}:eu-west-1"),
    ]
    provider = aws_provider("t", TWO)
    assert isinstance(provider, MultiRegionAwsProvider)
    assert provider.kinds() == {
        "ec2.Instance",
        f"ec2.Instance@{B}:us-east-1",
        f"ec2.Instance@{B}:eu-west-1",
    }
    assert provider.accounts == (A, B) and provider.regions == ("us-east-1", "eu-west-1")


def test_one_account_is_one_plain_provider_and_several_cannot_go_to_it() -> None:
    one = aws_provider("t", {**BASE, "accounts": [{"id": B, "role_arn": ROLE_B}]})
    assert isinstance(one, AwsProvider) and one.account == B and one.region == "us-east-1"
    assert "account='111111111111'" in repr(one)
    with pytest.raises(InvalidConfig, match="several regions or accounts"):
        AwsProvider("t", TWO)


def test_an_account_scoped_kind_has_its_kinds_rules_and_its_own_parents() -> None:
    kind = f"ecs.Service@{B}:eu-west-1"
    assert kind_def(kind) is not None and split_region(kind) == ("ecs.Service", f"{B}:eu-west-1")
    assert rules_for([kind])[kind].parents == (f"ecs.Cluster@{B}:eu-west-1",)
    for bad in (f"ecs.Service@{B}", f"ecs.Service@{B[:-1]}:eu-west-1", "ecs.Service@x:eu-west-1"):
        assert kind_def(bad) is None, bad
    assert scope_label(f"{B}:eu-west-1") == f"account {B} region eu-west-1"
    assert scope_label("eu-west-1") == "region eu-west-1"


ACCOUNTS_YAML = f"""\
resources:
  - kind: ecs.Cluster@{B}:eu-west-1
    name: apps
  - kind: ec2.Instance@{B}:eu-west-1
    name: web
    depends_on: [ecs.Cluster@{B}:eu-west-1/apps]
    spec: {{image_id: ami-1, instance_type: t3.micro}}
  - kind: ec2.Instance
    name: web
    spec: {{image_id: ami-1, instance_type: t3.micro}}
"""


def test_desired_state_names_a_further_account_in_the_kind(tmp_path: Path) -> None:
    (tmp_path / "fleet.yaml").write_text(ACCOUNTS_YAML)
    desired = load_desired_dir(tmp_path, now=NOW)
    assert {str(r.key) for r in desired.resources} == {
        f"ecs.Cluster@{B}:eu-west-1/apps",
        f"ec2.Instance@{B}:eu-west-1/web",
        "ec2.Instance/web",
    }
    web = next(r for r in desired.resources if r.key.kind == f"ec2.Instance@{B}:eu-west-1")
    assert web.depends_on == (ResourceKey(kind=f"ecs.Cluster@{B}:eu-west-1", name="apps"),)
    served = aws_provider("t", {**TWO, "kinds": ["ec2.Instance", "ecs.Cluster"]}).kinds()
    check_kinds(desired, served)  # all served
    other = "222222222222"
    (tmp_path / "fleet.yaml").write_text(ACCOUNTS_YAML.replace(B, other))
    with pytest.raises(InvalidDesiredState) as err:
        check_kinds(load_desired_dir(tmp_path, now=NOW), served)
    lines = sorted((loc.line, msg.split(":")[0]) for loc, msg in err.value.problems)
    assert lines == [(2, f"ecs.Cluster@{other}"), (4, f"ec2.Instance@{other}")]
    assert "is not a further region or account" in err.value.problems[0][1]


def _plan_over(completeness: dict[str, float]) -> list[str]:
    """Deletions planned when every kind of two accounts has one orphan."""
    from reconciler.core.compare import compare
    from reconciler.core.gate import BasicGate
    from reconciler.core.plan import PlanContext, make_plan
    from reconciler.core.policy import Policy
    from tests.builders import desired_state, have, node, snapshot

    kinds = ("sim.Node", f"sim.Node@{B}:us-east-1", f"sim.Node@{B}:eu-west-1")
    snap = snapshot(
        *[have(f"{k}/orphan", node()) for k in kinds], kinds=kinds, completeness=completeness
    )
    verdict = BasicGate(allow_empty_desired=True).check(snap, desired_state())
    policy = Policy(max_delete_fraction=1.0)
    rules = rules_for(list(kinds))
    diff, _ = compare([], snap, rules=rules, policy=policy)
    ctx = PlanContext(
        target="t",
        correlation_id="c",
        desired_version="v",
        policy=policy,
        rules=rules,
        now=NOW,
        allow_deletions=verdict.passed,
    )
    plan = make_plan(diff, snap, ctx)
    return sorted(str(a.target) for a in plan.actions if a.type == "delete")


def test_an_account_region_not_fully_observed_blocks_deletions_there_only() -> None:
    assert _plan_over({}) == sorted(
        ["sim.Node/orphan", f"sim.Node@{B}:us-east-1/orphan", f"sim.Node@{B}:eu-west-1/orphan"]
    )
    assert _plan_over({f"sim.Node@{B}:us-east-1": 0.0}) == sorted(
        ["sim.Node/orphan", f"sim.Node@{B}:eu-west-1/orphan"]
    )
    assert _plan_over({"sim.Node": 0.5}) == sorted(
        [f"sim.Node@{B}:us-east-1/orphan", f"sim.Node@{B}:eu-west-1/orphan"]
    )


def _config(tmp_path: Path, accounts: str) -> Path:
    (tmp_path / "desired").mkdir(exist_ok=True)
    path = tmp_path / "targets.yaml"
    path.write_text(
        textwrap.dedent("""\
        targets:
          prod:
            provider:
              type: aws
              options:
                emulator: true
                accounts:
        """)
        + textwrap.indent(textwrap.dedent(accounts), " " * 10)
        + "    desired: desired\n"
    )
    return path


def test_a_bad_role_arn_in_the_config_is_named_by_file_line_and_field(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        f"""\
        - id: "{A}"
        - id: "{B}"
          role_arn: arn:aws:iam::{A}:role/reconciler
        - id: 42
        """,
    )
    with pytest.raises(InvalidConfig) as err:
        load_target("prod", str(path), f"sqlite:///{tmp_path}/state.db")
    found = sorted((loc.file, loc.line, loc.field, msg) for loc, msg in err.value.problems)
    assert found == [
        (
            str(path.resolve()),
            10,
            "targets.prod.provider.options.accounts[1].role_arn",
            f"a role of account {A}, not of this entry's id {B}",
        ),
        (
            str(path.resolve()),
            11,
            "targets.prod.provider.options.accounts[2].id",
            "quote the account id: YAML reads an unquoted one as a number and drops its leading "
            "zeros (got 42)",
        ),
    ]


def test_a_good_accounts_config_loads(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        f"""\
        - id: "{A}"
        - id: "{B}"
          role_arn: {ROLE_B}
          regions: [eu-west-1]
        """,
    )
    target = load_target("prod", str(path), f"sqlite:///{tmp_path}/state.db")
    assert f"ec2.Instance@{B}:eu-west-1" in target.kinds()


def test_the_caller_policy_assumes_exactly_the_roles_and_acts_only_where_it_must() -> None:
    kinds = ["ec2.Instance", f"ec2.Instance@{B}:eu-west-1"]
    roles = [ROLE_B, f"arn:aws:iam::{A}:role/r"]
    only_roles = caller_policy("prod", kinds, roles, direct=False)
    assert only_roles["Statement"] == [
        {
            "Sid": "ReconcilerAssumeAccountRoles",
            "Effect": "Allow",
            "Action": ["sts:AssumeRole"],
            "Resource": sorted(roles),
        }
    ]
    both = caller_policy("prod", kinds, [ROLE_B], direct=True)
    assert both["Statement"][:-1] == policy("prod", kinds)["Statement"]
    assert both["Statement"][-1]["Resource"] == ROLE_B
    assert caller_policy("prod", kinds, []) == policy("prod", kinds)
    assert not any("sts:" in a for s in policy("prod", kinds)["Statement"] for a in s["Action"])


class _Sts:
    def __init__(self, lifetime_s: float, calls: list[dict[str, object]]) -> None:
        self.lifetime_s, self.calls = lifetime_s, calls

    def assume_role(self, **request: object) -> dict[str, object]:
        from datetime import timedelta

        self.calls.append(request)
        n = len(self.calls)
        return {
            "Credentials": {
                "AccessKeyId": f"ASIAFAKEKEY{n:08d}",
                "SecretAccessKey": f"secret-{n}-abcdefgh",
                "SessionToken": f"token-{n}-abcdefgh",
                "Expiration": datetime.now(UTC) + timedelta(seconds=self.lifetime_s),
            },
            "AssumedRoleUser": {"Arn": f"arn:aws:sts::{B}:assumed-role/reconciler/s"},
        }


class _Base:
    """The target's own session: only ever asked for an STS client."""

    def __init__(self, lifetime_s: float) -> None:
        self.calls: list[dict[str, object]] = []
        self.lifetime_s = lifetime_s

    def client(self, service: str, **kwargs: object) -> _Sts:
        assert service == "sts" and kwargs["endpoint_url"] == "http://127.0.0.1:9"
        return _Sts(self.lifetime_s, self.calls)


@pytest.mark.parametrize(("lifetime_s", "fetches"), [(3600, 1), (300, 3)])
def test_assumed_credentials_are_fetched_on_first_use_and_again_before_they_expire(
    lifetime_s: float, fetches: int
) -> None:
    from reconciler.providers.aws.session import ClientFactory

    base = _Base(lifetime_s)
    opts = parse_options(
        {**BASE, "accounts": [{"id": B, "role_arn": ROLE_B, "external_id": "ext-1"}]}
    )
    factory = ClientFactory(opts, base, session_name="reconciler-prod")
    assert base.calls == []  # nothing fetched before a call needs it
    for _ in range(3):  # within botocore's refresh window a call fetches them again
        frozen = factory._session.get_credentials().get_frozen_credentials()
    assert len(base.calls) == fetches
    assert base.calls[0] == {
        "RoleArn": ROLE_B,
        "RoleSessionName": "reconciler-prod",
        "ExternalId": "ext-1",
    }
    assert frozen.access_key == f"ASIAFAKEKEY{fetches:08d}"
    # every fetched secret is scrubbed from errors and logs
    assert factory.scrub(f"x {frozen.secret_key} {frozen.token}") == "x *** ***"
