"""Older MAD packages import `CustomModel` from here; it is the same class as in `madengine.utils`."""

from madengine.utils.discover_models import CustomModel

__all__ = ["CustomModel"]
