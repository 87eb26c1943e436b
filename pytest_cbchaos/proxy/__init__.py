"""Embedded Toxiproxy-2.x-compatible fault proxy (server, toxics, first-party client; docs/fault-kit-design.md).

Run it with ``python -m pytest_cbchaos.proxy`` (Toxiproxy's flags plus ``--port-file`` and
``--loopback-only``); launch it from tests with :func:`pytest_cbchaos.servers.toxiproxy.start_toxiproxy`;
drive it with :class:`pytest_cbchaos.proxy.client.Client` or any Toxiproxy client.

Deliberate divergences from Toxiproxy 2.12.0 (never asserted by the conformance suite except on
the embedded backend):

* loopback only by default (wildcard listen addresses bind 127.0.0.1); ``-seed`` is honoured;
* the upstream dial runs per connection, not in the accept loop;
* negative integer toxic attributes (``latency: -100``, ``rate: -1`` ...) are rejected with
  400 ``bad request body: <name> must be >= 0, got <value>`` (Toxiproxy stores them);
* extension toxics ``cbchaos_blackhole`` and ``cbchaos_http_fault`` and ``GET /cbchaos/capabilities``.
"""

VERSION = "2.12.0"  # the Toxiproxy release whose API the embedded server follows
