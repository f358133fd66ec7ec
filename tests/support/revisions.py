"""The newest migration's revision, the one place tests name it.

Raised with each new migration: ``tests/migrations/test_migrations.py`` checks it is the head
of the scripts, and the CLI and wheel tests expect ``db upgrade`` to reach it.
"""

HEAD = "0005"
