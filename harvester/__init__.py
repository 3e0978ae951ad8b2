"""harvest: a resumable, high-throughput Flickr research-dataset harvester."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("harvest")
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"
