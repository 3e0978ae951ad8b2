"""The test suite: `pytest -m "not slow"` is the inner loop; `bash .ci/run` runs everything."""
