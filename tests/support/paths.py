"""Where the checkout is: for the tests of what only a checkout has (alembic.ini, the README)."""

from __future__ import annotations

from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]
