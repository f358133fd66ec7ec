"""The Alembic scripts, installed as ``trace_service.migrations`` so that ``flask db upgrade``
works from a wheel; ``alembic.ini`` at the top of a checkout points at this folder too."""
