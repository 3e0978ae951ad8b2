"""Flickr: the REST client, response parsing (searches, lists, look-ups) and the shared budget."""
