"""Client-side pacing of AWS calls: token buckets on a fake clock, bounded waits, stats."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from reconciler.core.errors import InvalidConfig, TemporaryError
from reconciler.providers.aws.calls import AwsStats, Caller
from reconciler.providers.aws.pacing import (
    EC2_DEFAULT_LIMITS,
    PACING_CODE,
    Pacer,
    RateLimit,
    effective_limits,
    talks_to_aws,
)
from reconciler.providers.aws.session import ClientFactory, parse_options
from reconciler.testing import FakeClock

RUN = ("ec2", "run_instances")


def pacer(limits: dict[str, Any], clock: FakeClock) -> Pacer:
    return Pacer(effective_limits(limits, against_aws=False), monotonic=clock.monotonic,
                 sleep=clock.sleep)


@pytest.mark.parametrize(("n", "rate", "burst"), [(25, 5.0, 5.0), (100, 20.0, 1.0), (7, 2.0, 5.0)])
def test_n_calls_at_rate_r_take_n_minus_burst_over_r_fake_seconds(n, rate, burst):
    clock = FakeClock()
    p = pacer({"ec2.RunInstances": RateLimit(rate=rate, burst=burst)}, clock)
    for _ in range(n):
        p.wait(*RUN, budget_s=60)
    assert clock.monotonic() == pytest.approx((n - burst) / rate)
    assert sum(1 for s in clock.sleeps if s > 0) == n - burst


def test_a_burst_goes_through_at_once_and_an_idle_bucket_refills_to_its_burst_only():
    clock = FakeClock()
    p = pacer({"ec2.RunInstances": RateLimit(rate=2, burst=5)}, clock)
    assert [p.wait(*RUN, budget_s=60) for _ in range(5)] == [0.0] * 5
    clock.advance(3600)  # an hour idle still allows only the burst
    assert [p.wait(*RUN, budget_s=60) for _ in range(6)] == [0.0] * 5 + [0.5]


def test_concurrent_callers_each_get_their_own_turn():
    """Frozen time: 40 threads at once must be spaced 1/r apart after the burst, none twice."""
    rate, burst, n = 10.0, 4.0, 40
    waits: list[float] = []
    lock, start = threading.Lock(), threading.Barrier(n)
    p = Pacer(effective_limits({"ec2.RunInstances": RateLimit(rate=rate, burst=burst)}, False),
              monotonic=lambda: 100.0, sleep=lambda s: None)

    def one() -> None:
        start.wait()
        wait = p.wait(*RUN, budget_s=60)
        with lock:
            waits.append(wait)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = [0.0] * int(burst) + [k / rate for k in range(1, n - int(burst) + 1)]
    assert sorted(waits) == pytest.approx(expected)


def test_a_wait_past_the_budget_raises_a_temporary_error_and_takes_no_token():
    clock = FakeClock()
    p = pacer({"ec2.RunInstances": RateLimit(rate=1, burst=1)}, clock)
    p.wait(*RUN, budget_s=10)
    with pytest.raises(TemporaryError) as refused:
        p.wait(*RUN, budget_s=0.5)
    assert refused.value.delay == 1.0 and refused.value.code == PACING_CODE
    assert "client-side rate limit" in str(refused.value)
    assert p.wait(*RUN, budget_s=10) == 1.0  # the refused call did not push the queue back
    assert clock.sleeps == [1.0]


def test_a_service_limit_and_an_operation_limit_both_apply():
    clock = FakeClock()
    p = pacer({"ec2": RateLimit(rate=1, burst=1), "ec2.RunInstances": 10}, clock)
    assert p.wait("ec2", "describe_tags", 60) == 0.0
    assert p.wait(*RUN, 60) == 1.0  # the service's bucket is the slower one
    assert p.wait("ecs", "create_service", 60) == 0.0  # another service is not limited


def test_a_throttle_seen_empties_the_bucket_so_the_next_call_waits_a_refill():
    clock = FakeClock()
    p = pacer({"ec2.RunInstances": RateLimit(rate=4, burst=10)}, clock)
    p.wait(*RUN, 60)
    p.throttled(*RUN)
    assert p.wait(*RUN, 60) == 0.25


def test_the_ec2_defaults_apply_against_aws_only_and_config_overlays_them():
    limits = effective_limits(None, against_aws=True)
    assert limits[RUN] == RateLimit(rate=2, burst=5) == EC2_DEFAULT_LIMITS["ec2.RunInstances"]
    assert effective_limits(None, against_aws=False) == {}
    mine = effective_limits({"ec2.run_instances": 20, "ec2.CreateTags": 0, "ecs": 5.5}, True)
    assert mine[RUN] == RateLimit(rate=20, burst=20)
    assert ("ec2", "create_tags") not in mine and mine[("ecs", None)].rate == 5.5
    assert mine[("ec2", "terminate_instances")] == RateLimit(rate=5, burst=100)


def test_an_endpoint_or_the_emulator_flag_means_not_aws():
    assert talks_to_aws(None, False, env={})
    assert not talks_to_aws("http://127.0.0.1:5000", False, env={})
    assert not talks_to_aws(None, True, env={})
    assert not talks_to_aws(None, False, env={"AWS_ENDPOINT_URL_EC2": "http://x"})


def test_rate_limit_options_are_validated():
    opts = parse_options({"rate_limits": {"ec2.RunInstances": {"rate": 2, "burst": 5},
                                          "autoscaling": 3}})
    assert opts.rate_limits == {"ec2.RunInstances": RateLimit(rate=2, burst=5), "autoscaling": 3}
    for bad in ({"EC2 run": 1}, {"ec2.RunInstances": -1}, {"ec2": {"rate": 1, "burst": 0}}):
        with pytest.raises(InvalidConfig, match="rate_limits"):
            parse_options({"rate_limits": bad})


# -- through the Caller, with a fake boto3 session -------------------------------------------

class _Client:
    def __init__(self, fail: list[str]) -> None:
        self.fail, self.calls = fail, 0

    def run_instances(self, **_: Any) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        self.calls += 1
        if self.fail:
            code = self.fail.pop(0)
            raise ClientError({"Error": {"Code": code, "Message": "slow down"},
                               "ResponseMetadata": {"HTTPStatusCode": 503}}, "RunInstances")
        return {"Instances": [{"InstanceId": "i-1"}], "ResponseMetadata": {"RetryAttempts": 0}}


class _Session:
    def __init__(self, client: _Client) -> None:
        self._client = client

    def client(self, service: str, **_: Any) -> _Client:
        return self._client

    def get_credentials(self) -> None:
        return None


def caller(clock: FakeClock, fail: list[str] | None = None,
           **options: Any) -> tuple[Caller, _Client]:
    fake = _Client(fail or [])
    opts = parse_options({"endpoint_url": "http://127.0.0.1:1", "emulator": True, **options})
    return Caller(ClientFactory(opts, _Session(fake)), AwsStats(), sleep=clock.sleep,
                  monotonic=clock.monotonic), fake


def test_the_caller_paces_each_call_and_counts_the_wait():
    clock = FakeClock()
    call, fake = caller(clock, rate_limits={"ec2.RunInstances": {"rate": 2, "burst": 1}})
    for _ in range(5):
        call.call("ec2", "run_instances", ImageId="ami-1")
    assert fake.calls == 5 and clock.monotonic() == 2.0
    assert call.stats.paced == 4 and call.stats.paced_wait_s == 2.0


def test_against_an_emulator_nothing_is_paced_unless_configured():
    clock = FakeClock()
    call, _ = caller(clock)
    for _ in range(50):
        call.call("ec2", "run_instances")
    assert clock.sleeps == [] and call.stats.paced == 0


def test_the_caller_counts_throttles_by_operation_and_slows_down_after_one():
    clock = FakeClock()
    call, _ = caller(clock, fail=["RequestLimitExceeded"],
                     rate_limits={"ec2.RunInstances": {"rate": 5, "burst": 10}})
    with pytest.raises(TemporaryError):
        call.call("ec2", "run_instances")
    assert call.stats.throttles == {"ec2.run_instances": 1} and call.stats.total_throttles == 1
    call.call("ec2", "run_instances")
    assert clock.sleeps == [0.2]
    call.stats.reset()
    assert call.stats.total_throttles == 0 and call.stats.paced == 0


def test_a_call_whose_turn_is_past_its_timeout_is_not_made():
    clock = FakeClock()
    call, fake = caller(clock, rate_limits={"ec2.RunInstances": {"rate": 0.1, "burst": 1}},
                        pacing_max_wait_s=60)
    call.call("ec2", "run_instances")
    with pytest.raises(TemporaryError) as refused:
        call.call("ec2", "run_instances", timeout_s=5)
    assert refused.value.delay == 10.0 and fake.calls == 1
    call2, _ = caller(clock, rate_limits={"ec2.RunInstances": {"rate": 0.1, "burst": 1}},
                      pacing_max_wait_s=2)
    call2.call("ec2", "run_instances")
    with pytest.raises(TemporaryError):  # no timeout given: pacing_max_wait_s bounds it
        call2.call("ec2", "run_instances")
