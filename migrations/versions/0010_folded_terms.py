"""folded terms: words found without their accents, Greek and Cyrillic ones too

Until now SQLite's tokenizer (unicode61, remove_diacritics 2) folded the accents of Latin letters
only, and PostgreSQL's ``english`` configuration folded none: "ΑΘΗΝΑ" (Greek capitals carry no
accents) did not find "Αθήνα", "елка" did not find "ёлка", and on PostgreSQL "cafe" did not find
"café". tvcaption now stores such words folded too, in ``annotations.terms``
(``tvcaption.search_terms.folded_terms``: what the backend does not fold itself; Latin accents
on PostgreSQL only, capitals in a PostgreSQL database of the C locale), and folds a query's
words. This migration adds the folded words to the terms of the annotations already stored; the
annotations' update triggers index them (and move the text search's counter).

No schema change. Downgrade leaves the terms: an older tvcaption searches them as extra words.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# texts with a character outside printable ASCII: only those can have accents to fold
NON_ASCII = {"sqlite": "a.text GLOB '*[^ -~]*'", "postgresql": "a.text ~ '[^[:ascii:]]'"}


def upgrade() -> None:
    from tvcaption.db.scenes import text_backend
    from tvcaption.search_terms import folded_terms

    if op.get_context().as_sql:  # offline SQL: the terms need Python; index again to get them
        return
    conn = op.get_bind()
    dialect = conn.dialect.name
    backend = text_backend(conn)
    rows = conn.execute(sa.text(f"SELECT a.id, a.text, a.terms FROM annotations a WHERE a.field IS NOT NULL "
                                f"AND {NON_ASCII.get(dialect, '1 = 1')}")).all()
    updates = []
    for row in rows:
        more = folded_terms(row.text, backend)
        if more:
            updates.append({"id": row.id, "terms": f"{row.terms} {more}" if row.terms else more})
    if updates:
        conn.execute(sa.text("UPDATE annotations SET terms = :terms WHERE id = :id"), updates)


def downgrade() -> None:
    pass
