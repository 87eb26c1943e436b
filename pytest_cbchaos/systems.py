"""The built-in systems register their scenario targets and checker models with the core.

Adding a system: write its targets (:class:`pytest_cbchaos.scenario.target.Target`) and models,
then register them from a ``register()`` like this one, listed under the entry-point group
``pytest_cbchaos.systems`` (docs/scenarios.md, "Registering a system").
"""

from __future__ import annotations

TARGETS = {
    "breaker-store": "pytest_cbchaos.scenario.targets.breaker_store:BreakerStoreTarget",
    "recovery": "pytest_cbchaos.scenario.targets.recovery:RecoveryTarget",
    "stream": "pytest_cbchaos.scenario.targets.stream:StreamTarget",
    "gateway": "pytest_cbchaos.scenario.targets.gateway:GatewayTarget",
}
MODELS = {
    "breaker-store": "pytest_cbchaos.breaker.checker_model:BreakerStoreModel",
}


def register() -> None:
    from pytest_cbchaos.linearizability.models import register_model
    from pytest_cbchaos.scenario.targets import register_target

    for name, spec in TARGETS.items():
        register_target(name, spec)
    for name, spec in MODELS.items():
        register_model(name, spec)
