"""Optional dependencies in the tests: skipped where they are not installed, except under
CI (CI=true), whose install step puts them there, so that a missing one fails rather than
quietly skipping the tests that check against it."""
import importlib
import os

import pytest


def require(name):
    """The module ``name``: pytest.importorskip's, but an ImportError under CI."""
    if os.environ.get("CI"):
        return importlib.import_module(name)
    return pytest.importorskip(name)
