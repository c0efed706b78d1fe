"""Scaffolding shared by every test folder (fixtures live in ``conftest.py``)."""

from __future__ import annotations

SENTINEL = "s3cr3t-sentinel"
"""A secret that must never appear in a message, a log line, a repr or a cache key."""
