"""make bench's peak RSS per child: the child's own VmHWM, not wait4's ru_maxrss, which Linux seeds
with the parent's high-water mark across fork/exec (every later child then reads as big as the
largest thing the parent ever held)."""
from __future__ import annotations

import sys

import numpy as np

from parity import bench


def test_child_peak_is_its_own_not_the_parents():
    held = np.ones(400 << 20, dtype=np.uint8)  # the parent touches 400 MiB, then lets go
    del held
    cmd = [sys.executable, "-c", "from parity.bench import vm_hwm_mib; print(vm_hwm_mib())"]
    stdout, _, usage = bench._spawn(cmd, "vm_hwm probe", {})
    own = float(stdout.strip().splitlines()[-1])
    assert usage.ru_maxrss / 1024 > 400  # the inherited figure the bench no longer reports
    assert 5 < own < 200  # an interpreter importing parity.bench (numpy, no torch)
