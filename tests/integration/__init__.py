"""Tests that run whole applications or URLs end to end through real server processes."""
