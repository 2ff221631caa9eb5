"""core.fresh: an update is refused when a field it means to change moved since the plan."""

from __future__ import annotations

from reconciler.core.fresh import changed_since_plan
from reconciler.core.policy import Policy
from tests.builders import have, node, want
from tests.loop_support import Rig


def planned_update(ignore: tuple[str, ...] = ()):
    """n1 drifted: instance_type m5.large -> want m5.xlarge; its labels drift is ignored."""
    rig = Rig.make()
    rig.provider.put("sim.Node", "n1", node(instance_type="m5.large", labels={"a": "1"}))
    desired = [want("sim.Node/n1", node(instance_type="m5.xlarge"), ignore_fields=ignore)]
    plan = rig.cycle(desired, Policy(jitter=0), dry_run=True).plans[0]
    [update] = plan.actions
    assert update.type == "update"
    return update


def test_an_update_still_fits_when_nothing_it_changes_moved():
    update = planned_update(ignore=("labels",))
    same = have("sim.Node/n1", node(instance_type="m5.large", labels={"b": "2"}))
    assert changed_since_plan(update, same) is None  # an ignored field may move freely


def test_a_retry_after_a_lost_response_finds_its_own_change_and_goes_on():
    update = planned_update(ignore=("labels",))
    done = have("sim.Node/n1", node(instance_type="m5.xlarge", labels={"a": "1"}))
    assert changed_since_plan(update, done) is None


def test_someone_elses_change_to_a_planned_field_refuses_the_update():
    update = planned_update(ignore=("labels",))
    theirs = have("sim.Node/n1", node(instance_type="c5.large", labels={"a": "1"}))
    reason = changed_since_plan(update, theirs)
    assert reason and "instance_type changed since the plan was made" in reason
    assert "'m5.large'" in reason and "'c5.large'" in reason


def test_a_resource_gone_since_the_plan_refuses_the_update_but_never_the_rollback():
    update = planned_update()
    assert "gone" in (changed_since_plan(update, None) or "")
    assert update.inverse is not None
    assert changed_since_plan(update.inverse.model_copy(update={"id": update.id + "#undo"}),
                              None) is None
