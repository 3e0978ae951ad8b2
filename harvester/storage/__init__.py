"""Where a harvest's files go: output targets (local or fsspec), the probe, WebDataset shards.

    target.py   open_target(spec) -> Target: put / writer / read / exists / remove / find, atomic
    probe.py    check_shared(out, elsewhere): a file written elsewhere is seen by the driver
    shards.py   write_shard(target, dir_key, members) -> ShardManifest: tar + Parquet + stats

This room knows only the shared core; the runner and the engine wire it to the store.
"""
