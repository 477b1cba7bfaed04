"""Client layer: the session_proxy package alone, no server (tests/test_layers.py checks)."""
