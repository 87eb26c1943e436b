"""Op ids stay unique across fork(): a child repeating its parent's ids would be deduplicated as resends."""

import os

from pytest_cbchaos.breaker.store import OpIds


def test_forked_child_gets_a_new_prefix():
    ids = OpIds()
    parent_before = ids()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report one id and leave without running any pytest machinery
        os.write(w, ids().encode())
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    child = os.read(r, 64).decode()
    os.close(r)
    parent_after = ids()
    assert parent_after[:16] == parent_before[:16]
    assert child[:16] != parent_after[:16]
    assert child != parent_after
