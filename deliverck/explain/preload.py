"""Imported by the fork server of explain's worker pool (pool.py), by nothing else: importing it
loads the rule table, the systems and the catalog once, in the server, so that every worker forked
from it starts with them ready instead of loading them itself (a few tenths of a second each)."""

from deliverck.explain import pool, render  # noqa: F401 - render: workers render the records (pool._rendered)

pool.warm()
