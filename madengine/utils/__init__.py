"""Helpers kept at the import paths that MAD packages expect (`madengine.utils.discover_models`)."""
