"""harvest: a resumable, high-throughput Flickr research-dataset harvester."""

__version__ = "0.1.0"
