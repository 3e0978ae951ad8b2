"""A faithful local Flickr: REST API, static image host and a seeded synthetic corpus.

config.py       EmulatorConfig, profiles (ideal / realistic / hostile) and realism switches
vocabulary.py   keywords: places, Hays's negative terms, generic tags, with target shares
corpus*.py      the numpy columnar corpus and its keyword indexes (1M photos in seconds)
copies.py       near-duplicate groups: a source and 1-3 copies of eight kinds, their parameters
search.py       exact flickr.photos.search matching and sorting (the ground truth)
quirks.py       Flickr's cap, date floor, fuzzy edges, under-reported totals, short pages
photojson.py    search records with extras; sizes.py the size ladder and secrets
lists.py        albums, galleries, group pools, Commons: a layer derived from the corpus
list_methods.py their REST methods (photosets, galleries, pools, urls look-ups, commons)
methods.py      the REST methods; rest.py the endpoint (keys, formats, faults, rate limit)
xmlfmt.py       REST XML rendering; faults.py fault plan, token bucket, statistics
images.py       photo-like pixels and copies' edits; static.py the image host and its byte cache
control.py      /_emulator/ truth, stats, vocabulary and per-photo ground truth
server.py       Emulator, run_emulator (in-process), serve_forever (`harvest emulate`)
"""

from harvester.emulator.config import PROFILES, EmulatorConfig
from harvester.emulator.server import (
    DEFAULT_API_KEY,
    Emulator,
    RunningEmulator,
    run_emulator,
    serve_forever,
)

__all__ = [
    "DEFAULT_API_KEY",
    "PROFILES",
    "Emulator",
    "EmulatorConfig",
    "RunningEmulator",
    "run_emulator",
    "serve_forever",
]
