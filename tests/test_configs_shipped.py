"""Every config under configs/ parses and passes the structural checks (data files may be absent)."""

import glob
import os

import pytest

from suites import config
from suites.errors import MISTAKES

CONFIGS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "configs", "*.yaml")))


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_shipped_config_is_valid(path):
    try:
        config.load(path)
    except MISTAKES as exc:  # only a missing data file (../shared or the user's own) is acceptable
        assert "file not found" in str(exc), str(exc)
