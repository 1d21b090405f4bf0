"""Debian packages a test needs (a browser, Prometheus), installed with apt-get on a fresh machine.

CI runs the suite as root on a clean Debian image, so a missing package is installed there rather than the test
being skipped; elsewhere a missing package fails the test with the command that installs it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


def installed(executable: Path, package: str) -> Path:
    """``executable``, after ``apt-get install package`` when it is not there yet."""
    if not executable.exists():
        if os.geteuid() != 0:
            pytest.fail(f"this test needs Debian's {package}: apt-get install -y {package}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", package]):
            subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)
    return executable
