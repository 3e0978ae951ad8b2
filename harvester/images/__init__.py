"""Images: size choice, download, decoding, frames, processing, metadata and the writer."""
