"""The dataset room: what harvest knows about its photos as a collection (fingerprints, copies).

It imports only the shared core (records, exceptions, config, retry, licenses) and its own
modules, never a stage: its inputs are numpy arrays and bytes.
"""
