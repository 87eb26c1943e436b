"""First-party client, backend selection (embedded/binary/url/docker) and the embedded CLI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_cbchaos.faults.journal import FaultJournal
from pytest_cbchaos.proxy.client import (BackendCapabilityError, BadRequest, Client, Conflict, NotFound,
                                         ServerError)
from pytest_cbchaos.proxy.testkit import connect, raw, recv_exact, recv_until_closed
from pytest_cbchaos.servers.ports import allocate_port
from pytest_cbchaos.servers.process import ManagedProcess
from pytest_cbchaos.servers.toxiproxy import (BackendUnavailable, docker_run_kwargs, start_toxiproxy)


@pytest.fixture
def client(embedded_tp):
    c = embedded_tp.client(journal=FaultJournal())
    yield c
    for proxy in c.proxies().values():
        proxy.delete()


def test_typed_errors(client, echo_address):
    client.create_proxy("p", echo_address)
    with pytest.raises(Conflict) as info:
        client.create_proxy("p", echo_address)
    assert info.value.status == 409 and info.value.message == "proxy already exists"
    with pytest.raises(NotFound):
        client.get_proxy("nope")
    with pytest.raises(BadRequest, match="invalid toxic type"):
        client.get_proxy("p").add_toxic("down")
    with pytest.raises(BadRequest, match="stream was invalid"):
        client.get_proxy("p").add_toxic("latency", stream="sideways")
    with socket.socket() as blocker:  # the kernel picks a port that is free now, and we hold it
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.raises(ServerError, match="address already in use"):
            client.create_proxy("q", echo_address, listen=f"127.0.0.1:{port}")


def test_negative_latency_is_rejected_with_toxiproxy_body(client, echo_address, embedded_tp):
    client.create_proxy("p", echo_address)
    r = raw(embedded_tp.url, "POST", "/proxies/p/toxics", json.dumps({"type": "latency", "attributes": {"latency": -100}}))
    assert r.status_code == 400
    assert r.content == b'{"error":"bad request body: latency must be \\u003e= 0, got -100","status":400}\n'
    with pytest.raises(BadRequest, match="latency must be >= 0"):
        client.get_proxy("p").add_toxic("latency", latency=-1)


def test_journal_and_context_managers(client, echo_address):
    proxy = client.create_proxy("p", echo_address)
    journal = client.journal
    with connect(proxy.listen_port) as s:
        with proxy.toxic("latency", latency=50) as toxic:
            assert toxic.name == "latency_downstream" and toxic.attributes == {"latency": 50, "jitter": 0}
            start = time.monotonic()
            s.sendall(b"x")
            assert recv_exact(s, 1) == b"x" and time.monotonic() - start >= 0.05
        assert proxy.toxics() == []
        with proxy.partition("downstream"):
            s.sendall(b"lost")
            s.settimeout(0.1)
            with pytest.raises(socket.timeout):
                s.recv(4)
        data, _ = recv_until_closed(s)  # healing a timeout partition closes the connection
        assert data == b""
    with proxy.down():
        proxy.refresh()
        assert proxy.enabled is False
    assert proxy.enabled is True
    kinds = [(w["kind"], w["target"], w["end_ns"] is not None) for w in journal.to_dicts()]
    assert kinds == [("toxic:latency", "p", True), ("partition:downstream", "p", True), ("down", "p", True)]
    first = journal.to_dicts()[0]
    assert first["params"] == {"stream": "downstream", "toxicity": 1.0, "attributes": {"latency": 50}}


def test_update_toxic_uses_patch_and_merges(client, echo_address):
    proxy = client.create_proxy("p", echo_address)
    proxy.add_toxic("latency", latency=100, jitter=5, toxicity=0.5)
    updated = proxy.update_toxic("latency_downstream", jitter=9)
    assert updated.attributes == {"latency": 100, "jitter": 9} and updated.toxicity == 0.5
    assert client._update_method() == "PATCH"


def test_capabilities_and_extension_toxic(client, embedded_tp, echo_address):
    assert "cbchaos_blackhole" in client.capabilities() and "cbchaos_blackhole" in embedded_tp.capabilities
    proxy = client.create_proxy("p", echo_address)
    with connect(proxy.listen_port) as s:
        with proxy.toxic("cbchaos_blackhole", mode="hold"):
            s.sendall(b"held")
            s.settimeout(0.1)
            with pytest.raises(socket.timeout):
                s.recv(4)
        assert recv_exact(s, 4) == b"held"  # delivered on heal, connection kept
    no_caps = Client(embedded_tp.url)
    no_caps._caps = set()  # what a real Toxiproxy answers (404 on /cbchaos/capabilities)
    with pytest.raises(BackendCapabilityError):
        no_caps.get_proxy("p").add_toxic("cbchaos_blackhole")
    no_caps.close()


def test_populate_and_reset(client, echo_address):
    proxies = client.populate([{"name": "a", "upstream": echo_address, "listen": "127.0.0.1:0"},
                               {"name": "b", "upstream": echo_address, "listen": "127.0.0.1:0", "enabled": False}])
    assert [(p.name, p.enabled) for p in proxies] == [("a", True), ("b", False)]
    proxies[0].add_toxic("latency", latency=1)
    client.reset()
    assert all(p.enabled and p.toxics() == [] for p in client.proxies().values())


def test_url_backend_prefixes_and_cleans_only_its_proxies(embedded_tp, tmp_path, echo_address):
    other = embedded_tp.client().create_proxy("someone-else", echo_address)
    server = start_toxiproxy("url", workdir=tmp_path, url=embedded_tp.url, worker="gw3")
    assert server.backend == "url" and server.version == "2.12.0" and server.process is None
    name = server.proxy_name("redis")
    assert name == "cbchaos-gw3-redis"
    server.client().create_proxy(name, echo_address)
    server.stop()
    names = set(embedded_tp.client().proxies())
    assert name not in names and "someone-else" in names
    other.delete()


def test_unavailable_backends_raise_usage_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BackendUnavailable, match="toxiproxy-server is not on PATH"):
        start_toxiproxy("binary", workdir=tmp_path)
    with pytest.raises(BackendUnavailable, match="not found or not executable"):
        start_toxiproxy("binary", workdir=tmp_path, binary=str(tmp_path / "missing"))
    monkeypatch.delenv("TOXIPROXY_URL", raising=False)
    with pytest.raises(BackendUnavailable, match="needs --cbchaos-toxiproxy-url"):
        start_toxiproxy("url", workdir=tmp_path)
    lease = allocate_port()
    with pytest.raises(BackendUnavailable, match="does not answer"):
        start_toxiproxy("url", workdir=tmp_path, url=f"http://127.0.0.1:{lease.port}")
    lease.release()
    with pytest.raises(BackendUnavailable, match="expected one of"):
        start_toxiproxy("podman", workdir=tmp_path)

    def no_engine():
        raise ConnectionError("no engine")
    with pytest.raises(BackendUnavailable, match="no Docker engine answers"):
        start_toxiproxy("docker", workdir=tmp_path, docker_factory=no_engine)


class FakeContainer:
    def __init__(self, proc: ManagedProcess, labels: dict[str, str]) -> None:
        self.proc = proc
        self.labels = labels
        self.id = f"c{id(self)}"
        self.removed = False

    def remove(self, force: bool = False) -> None:
        self.removed = True
        self.proc.stop()


class FakeContainers:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.runs: list[dict] = []
        self.stale = FakeContainer(ManagedProcess("stale", [sys.executable, "-c", "pass"], log_dir=tmp_path),
                                   {"cbchaos.run": "dead-run"})
        self.all = [self.stale]

    def list(self, all: bool = False, filters: dict | None = None):
        return [c for c in self.all if not c.removed]

    def run(self, **kwargs):
        """Instead of an image, start the embedded server with the container's command line."""
        self.runs.append(kwargs)
        port = next(a.split("=", 1)[1] for a in kwargs["command"] if a.startswith("-port="))
        proc = ManagedProcess("fake-container", [sys.executable, "-m", "pytest_cbchaos.proxy", "-host=127.0.0.1",
                                                 f"-port={port}"], log_dir=self.tmp_path)
        proc.start()
        container = FakeContainer(proc, kwargs["labels"])
        self.all.append(container)
        return container


class FakeDocker:
    def __init__(self, tmp_path: Path) -> None:
        self.containers = FakeContainers(tmp_path)

    def ping(self) -> bool:
        return True


def test_docker_backend_logic_with_fake_engine(tmp_path):
    fake = FakeDocker(tmp_path)
    server = start_toxiproxy("docker", workdir=tmp_path, docker_factory=lambda: fake, image="img:1")
    try:
        assert fake.containers.stale.removed  # stale labels swept at start
        run = fake.containers.runs[0]
        assert run["image"] == "img:1" and run["network_mode"] == "host" and run["detach"] is True
        assert run["command"] == ["-host=127.0.0.1", f"-port={server.port}"]
        assert run["labels"]["cbchaos.run"] and run["labels"]["cbchaos.role"] == "toxiproxy"
        assert server.backend == "docker" and server.version == "2.12.0"
        assert server.proxy_name("x") == "x"
    finally:
        server.stop()
    assert fake.containers.all[-1].removed
    assert docker_run_kwargs("i", 5, {})["command"] == ["-host=127.0.0.1", "-port=5"]


def test_cli_version_and_config(tmp_path, echo_address, capsys):
    from pytest_cbchaos.proxy.__main__ import main

    assert main(["-version"]) == 0
    assert capsys.readouterr().out == "toxiproxy-server version 2.12.0\n"
    with pytest.raises(SystemExit) as info:
        main(["-port", "http"])
    assert info.value.code == 2 and "-port: invalid value 'http'" in capsys.readouterr().err
    config = tmp_path / "proxies.json"
    config.write_text(json.dumps([{"name": "cfg", "upstream": echo_address, "listen": "127.0.0.1:0"},
                                  {"name": "", "upstream": "x:1"}]))
    port_file = tmp_path / "port"
    proc = ManagedProcess("tp-cli", [sys.executable, "-m", "pytest_cbchaos.proxy", "-host", "127.0.0.1", "-port", "0",
                                     "-config", str(config), "-proxy-metrics", "--port-file", str(port_file)],
                          log_dir=tmp_path, ready=lambda p: port_file.exists())
    proc.start()
    try:
        url = f"http://127.0.0.1:{port_file.read_text()}"
        proxy = Client(url).get_proxy("cfg")
        with connect(proxy.listen_port) as s:
            s.sendall(b"metrics!")
            assert recv_exact(s, 8) == b"metrics!"
        text = raw(url, "GET", "/metrics").text
        assert 'toxiproxy_proxy_received_bytes_total{direction="upstream"' in text
        assert "missing required field" in proc.log_tail()  # config errors are logged, not fatal
        import signal
        os.killpg(proc.pid, signal.SIGTERM)  # graceful shutdown
        assert proc.wait(10) == 0
    finally:
        proc.stop()


def test_metrics_off_by_default(embedded_tp):
    assert raw(embedded_tp.url, "GET", "/metrics").status_code == 404
