"""Flickr: the REST client, response parsing and the shared API-call budget."""
