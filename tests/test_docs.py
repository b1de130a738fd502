"""docs/config.md is generated from the config dataclasses; it must be current."""

import os

from suites.config.reference import render

DOC = os.path.join(os.path.dirname(__file__), "..", "docs", "config.md")


def test_config_reference_is_current():
    with open(DOC) as fh:
        assert fh.read() == render(), "run: python -m suites.config_docs > docs/config.md"
