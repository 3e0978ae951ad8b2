"""The stored photos' files, for the tools that read every one (`harvest index`)."""

from __future__ import annotations

from harvester.store.sqlite import Store


def stored_files(store: Store) -> list[tuple[int, str]]:
    """(photo id, path relative to OUT) of every stored photo that has a file, by id."""
    with store.reading() as db:
        rows = db.execute(
            "SELECT id, path FROM photos WHERE status = 'done' AND path IS NOT NULL ORDER BY id"
        ).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]
