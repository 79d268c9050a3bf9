"""Shared pytest fixtures. Append new fixtures at the end; keep each one small."""
from __future__ import annotations

import os
import sys
from typing import Callable

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
FAKE_TEGRASTATS = os.path.join(TESTS_DIR, "fake_tegrastats.py")
SHARED_DIR = os.path.join(os.path.dirname(TESTS_DIR), "..", "shared")


@pytest.fixture
def fake_tegrastats_argv() -> Callable[..., list[str]]:
    """Build the argv of tests/fake_tegrastats.py: ``fake_tegrastats_argv("--garbage")``.

    The fake runs under this interpreter at a 20 ms interval unless ``interval_ms`` says
    otherwise; extra arguments are its fault flags (see the fake's docstring).
    """

    def build(*flags: str, interval_ms: int = 20) -> list[str]:
        return [sys.executable, FAKE_TEGRASTATS, "--interval", str(interval_ms), *flags]

    return build


@pytest.fixture
def shared_samples_tsv() -> str:
    """Path of ../shared/tegrastats/samples.tsv; the test is skipped where it is absent."""
    path = os.path.normpath(os.path.join(SHARED_DIR, "tegrastats", "samples.tsv"))
    if not os.path.exists(path):
        pytest.skip("../shared/tegrastats/samples.tsv is not available")
    return path


def require_tool(found: object, what: str) -> None:
    """Skip loudly when a system tool is missing; with ``CI=true`` fail instead.

    ``found`` is whatever the lookup returned (a path, a module, True/False).
    """
    if found:
        return
    message = "MISSING TOOL: %s is not installed; this group of tests cannot run" % what
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI=true makes a missing tool a failure)")
    pytest.skip(message)
