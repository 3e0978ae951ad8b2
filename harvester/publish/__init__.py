"""Publish: what a harvest hands to other people, as pure functions over exported rows.

columns.py  the typed column table of every export (JSONL/CSV order, Parquet and HF types)
licensing.py what each Flickr licence asks of a re-user (ND, NC, SA, all rights reserved, PD)
changes.py  what the image stage did to a photo (frame removed, resized) and how to say it
credits.py  the TASL credit of each stored photo, as CSV rows and escaped Markdown
tables.py   Parquet batches typed from the column table (pyarrow, imported only here)
hf.py       the Hugging Face imagefolder metadata.jsonl rows, type-revealing rows first
card.py     the dataset card: Hugging Face YAML header and the Datasheets-for-Datasets sections

Rows are the mappings `harvest export` writes (export.row_dict); a row's `source` is read only
through `source_of`. It imports only the shared core and its own modules, never a stage: the
command module (harvester/outputs.py) reads the store and writes the files.
"""

#: `harvest export --format` choices: the record formats, then the dataset outputs.
EXPORT_FORMATS = ("jsonl", "csv", "parquet", "hf", "credits", "card")
