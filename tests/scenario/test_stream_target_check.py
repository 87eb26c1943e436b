"""The stream target's DS-n verdict carries the workload's errors: a consumer that raised is why it
never reached its terminal, and the report must say so."""

from pytest_cbchaos.scenario.model import CheckSpec
from pytest_cbchaos.scenario.targets import Observations
from pytest_cbchaos.scenario.targets.stream import StreamTarget


def test_ds_violation_counterexample_names_the_workload_errors():
    obs = Observations(errors=["c3.0: ResponseError: boom"])
    obs.metrics.update(entries=5, violations=["INV-6 reaches terminal: c3.0: never received the terminal of m"])
    res = StreamTarget().check(CheckSpec("invariant", "DS-6"), obs, ctx=None)
    assert res.verdict == "violated"
    assert res.counterexample == {"violations": obs.metrics["violations"], "errors": ["c3.0: ResponseError: boom"]}
    assert StreamTarget().check(CheckSpec("invariant", "DS-1"), obs, ctx=None).verdict == "ok"
