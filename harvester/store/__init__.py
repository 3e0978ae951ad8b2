"""Store: the SQLite store of photos, claims, windows and runs, and the merge destination."""
