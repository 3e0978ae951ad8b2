"""harvest: a resumable, high-throughput Flickr research-dataset harvester.

In the order a photo travels (README, "Data flow"):

cli.py          parse, build the RunConfig, set up logging, run a command, map errors to exit codes
runner.py       `harvest run` wiring (key or bundled emulator, store, session, budget, signals,
                worker processes), plus the `status` and `export` commands
engine.py       Engine: the one owner of the queues, tasks and thread pool; searches the keywords,
                then takes each claimed photo through fetch, process, write and record, once
batch.py        PhotoWork: one photo's size, fetch, process, write and fingerprint row, for the
                engine and the Ray tasks alike; record_outcome, its store update
cluster_engine.py  `--ray`: the driver's Dispatcher (a task per output directory, bounded in
                flight, commits, sweeps, retries); cluster_task.py the task body and the
                image-host limiter actor; cluster/ their pure policy and token bucket
search/         queries.py the queries file; windows.py windows and the planner's records;
                planner.py the adaptive window planner (KeywordPlan); loop.py search_keyword;
                source_lines.py `user:`/`album:`/`group:`/`gallery:`/`commons:` lines (pure);
                listings.py search_source: a keyword, a searched source or a list walk
flickr/         client.py the async REST client (budgeted, retried, key-safe); parse.py pure
                JSON-to-record parsing; listings.py the list methods, look-ups and Commons;
                budget.py the per-key call budget, local or shared
images/         sizes.py which size to fetch; download.py Fetcher; decoding.py, frames.py and
                process.py the process stage; jpegmeta.py, provenance.py the metadata stamped
                into each file; writer.py paths and atomic writes
store/          sqlite.py Store (checkpoints, claims, outcomes); schema.py DDL, codec and rows;
                merge.py the merge destination's writes; lookups.py source-line resolutions;
                batches.py the claimed photos by output directory (`--ray`)

Shared core, imported by the stages:

records.py      PhotoRecord, SizeVariant, PhotoStatus, DateField, SearchQuery, SearchPage
exceptions.py   the error tree, drawn in its docstring
config.py       RunConfig and ShardSpec: every run default in one place
retry.py        capped exponential backoff with full jitter (RetryPolicy, retry_async)
licenses.py     Flickr's licence table
exit_codes.py   the command's exit codes and which error maps to which

export.py       `harvest export`: a store's photos as JSONL or CSV, streamed
outputs.py      the dataset outputs (CREDITS.csv/.md, the card, Parquet, HF metadata.jsonl):
                reads the store, writes atomically; after every run and by `harvest export`
publish/        columns.py the typed export columns; credits.py, card.py, tables.py, hf.py:
                pure writers' rows over export rows (licence flags, image changes)
merge.py        `harvest merge`: shard outputs joined, each photo once
sources.py      `harvest sources` and `run --sources`: names resolved once, sources back-filled
lookups.py      a queries file's source lines resolved once (cached in the store) before a run
dataset/        pure dataset tools: fingerprints, pairs and groups, sources.py (owner → source)
progress.py     RunStats and the live display (a rich table, or plain log lines)
reporting.py    `harvest report`: the store's figures (store/report.py) drawn into one offline
                page by report/ (model.py the view, charts.py matplotlib, render.py jinja2)
serving.py      `harvest serve`: the store (store/serve.py, keyset pages) and the similarity index
                read into serve/'s views and served (serve/: app.py aiohttp, pages.py the views
                and seams, thumbs.py in-memory thumbnails, templates/ and static/)
emulator/       a faithful local Flickr (REST API, image host, seeded corpus), apart from the core
__main__.py     `python -m harvester`, the `harvest` command

Rooms to come: similarity.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("harvest")
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"
