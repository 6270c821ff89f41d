"""Session fixtures of the chart tests: each profile rendered once."""

from __future__ import annotations

import pytest
from chart_render import ALL_PROFILES, Manifest, profile_args, template


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Manifest]]:
    """Each profile's manifests (`helm template`), rendered once per session."""
    return {profile: template(*profile_args(profile)) for profile in ALL_PROFILES}
