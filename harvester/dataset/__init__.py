"""Dataset: fingerprints, duplicates, matching, similarity, report, credits, sources."""
