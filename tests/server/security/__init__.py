"""Server-side security: tokens, TLS, the SQL firewall and guards, raw hostile HTTP."""
