"""Server-side SQL analysis: read a statement's text without running it.

One concept per module, in the order a statement meets them:

- :mod:`.lexer` -- the tokenizer every other module reads (dialect-aware,
  notes text that backends would read differently);
- :mod:`.keywords` -- the SQL words the fingerprint and the classifier know;
- :mod:`.fingerprint` -- the normalized text policies list statements by;
- :mod:`.scanner` -- the hand-written scanner: tables, functions and locks
  of one statement;
- :mod:`.tables` -- the second opinion on tables (sqlglot) and how a table
  name meets a role's table rules;
- :mod:`.classify` -- kind, tables, functions and ambiguity of a text
  (scanner plus second parser);
- :mod:`.text_guard` -- text the database would read differently from the
  lexer, refused for everyone;
- :mod:`.session_guard` -- statements whose effect outlives a lease,
  refused for everyone;
- :mod:`.policy` -- per-role allowlists and table rules;
- :mod:`.recorder` -- records a workload into a strict policy;
- :mod:`.writes` -- whether a statement provably only reads.

Nothing here talks to a database or imports the client package's SQL code;
the client never imports this package.  Import the module you need
(``from session_proxy_server.sql.policy import Policy``): this file re-exports nothing, so
importing the lexer does not pull in sqlglot.
"""
