"""``noop``: pass-through; accepted by the API like Toxiproxy's NoopToxic."""

from pytest_cbchaos.proxy.toxics.base import Toxic, passthrough, register


@register
class NoopToxic(Toxic):
    TYPE = "noop"
    ATTRS: dict[str, str] = {}

    async def pipe(self, stub) -> None:
        await passthrough(stub)
