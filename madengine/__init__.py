"""madengine: declarative, reproducible benchmarking of AI models."""

__version__ = "0.1.0"
