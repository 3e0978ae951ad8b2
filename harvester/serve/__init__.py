"""`harvest serve`: a local web application over one harvest's store (aiohttp, jinja2).

app.py      the aiohttp Application: routes, handlers, errors (4xx pages, a plain 500), assets
query.py    pure: a request's filters, keyset cursor, page size and ids (BadQuery: 400)
pages.py    pure: live rates, the views, and the seams the command module fills: `Library`
            (the store, read-only) and `Searcher` (search by image)
thumbs.py   thumbnails made from the stored files in memory, a bounded LRU (never written)
templates/  the pages (jinja2, autoescaped); static/ the CSS and the script, served by the app

The room imports the shared core only; harvester/serving.py reads the store (store/serve.py)
and search (similar.py) into these views and starts the server.
"""
