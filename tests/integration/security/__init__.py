"""Security end to end: the attack suite and the security wiring seen from clients."""
