"""Sample orders for the sandbox's providers, under the names the tests use: each provider module's own
(``sample_order``; its ``sample`` makes what the order needs in the sandbox first).

The card is the test card the seeds name (4111 1111 1111 1111); it is only ever sent to the sandbox.
"""

from __future__ import annotations

from orderrelay.providers import adobe_vip, battleface, chaiz, extend, webroot
from orderrelay.providers.base import TEST_CARD

__all__ = ["TEST_CARD", "adobe_order", "battleface_order", "chaiz_order", "extend_order", "webroot_order"]

extend_order = extend.sample_order
chaiz_order = chaiz.sample_order
adobe_order = adobe_vip.sample_order
battleface_order = battleface.sample_order
webroot_order = webroot.sample_order
