"""Fixtures: see the module's owner issue."""
