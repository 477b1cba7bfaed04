"""Integration layer: client + real server process + real database, end to end."""
