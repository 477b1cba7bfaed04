"""Server layer: server modules, server processes hit with raw HTTP (tests/test_layers.py)."""
