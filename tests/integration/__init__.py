"""Tests that need real server processes and real databases, across client and server."""
