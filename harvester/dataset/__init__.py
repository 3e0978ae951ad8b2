"""Dataset: what harvest knows about its photos as a collection, after the harvest itself.

fingerprint.py  256-bit DCT sign hash (8 rotations/flips derived from it), c80, dHash, quality,
                byte and scan digests, the Fingerprint record
mih.py          multi-index hashing: all pairs within a Hamming radius over millions of codes
classify.py     what one copy is of another (identical, resized, rotated, flipped, cropped, …)
groups.py       duplicate groups: components for identical copies, stars for near ones
geometry.py     ORB + RANSAC: a fitted transform confirms crops and other changes
embed.py        the user's ONNX image model (onnxruntime, optional): images → unit vectors
vectors.py      the append-only vector index beside the store, and its brute-force search

It imports only the shared core (records, exceptions, config, retry, licenses) and its own
modules, never a stage: its inputs are numpy arrays, bytes and records.
"""
