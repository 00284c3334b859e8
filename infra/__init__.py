"""The ground floor: settings, database migrations, mail and logging adapters.

Imported by `web`, `tasks` and the entry points in `reportcycles`; imports only `workflow`.
"""
