"""Import paths of older ROCm madengine that MAD packages still use (`madengine.tools.discover_models`)."""
