"""The one SQLAlchemy ``MetaData`` every table module registers its tables on.

It sits at the bottom so that the table modules (``*/tables.py``) import it without importing
anything above them. Which modules define tables is known only above them all, by
``treasury.schema``, which imports each one.
"""

from __future__ import annotations

from sqlalchemy import MetaData

metadata = MetaData()
