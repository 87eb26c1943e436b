import subprocess
import sys

import pytest

from pytest_cbchaos.servers.ports import PortRangeError, allocate_port, candidate_ports
from pytest_cbchaos.settings import parse_port_range


def test_parse_port_range_errors_name_the_value():
    assert parse_port_range("20000-20010") == (20000, 20010)
    with pytest.raises(PortRangeError, match="'abc'.*LOW-HIGH"):
        parse_port_range("abc")
    with pytest.raises(PortRangeError, match="1024 <= LOW"):
        parse_port_range("30000-20000")


def test_range_inside_ephemeral_range_is_rejected():
    with pytest.raises(PortRangeError, match="ephemeral"):
        candidate_ports((40000, 40010))


def test_leases_are_distinct_and_released():
    leases = [allocate_port((21000, 21031)) for _ in range(16)]
    assert len({l.port for l in leases}) == 16
    for lease in leases:
        lease.release()
        assert not lease.held


ALLOCATE = """
import sys
from pytest_cbchaos.servers.ports import allocate_port
leases = [allocate_port((22000, 22063)) for _ in range(20)]
print(" ".join(str(l.port) for l in leases), flush=True)
sys.stdin.read()  # hold the locks until the parent closes stdin
"""


def test_no_port_is_handed_to_two_processes():
    procs = [subprocess.Popen([sys.executable, "-c", ALLOCATE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True) for _ in range(3)]
    try:
        seen = [set(map(int, p.stdout.readline().split())) for p in procs]
    finally:
        for p in procs:
            p.stdin.close()
            p.wait(10)
    assert all(len(s) == 20 for s in seen)
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
