"""Fixtures for the reliability suite (faults, hostile input, load).

Several parts of the suite share this file: add fixtures, do not change the ones here.
"""

from __future__ import annotations

from tests.discord.conftest import fake_discord, world

# Re-exported so that pytest finds the Discord fixtures in this directory too.
__all__ = ["fake_discord", "world"]
