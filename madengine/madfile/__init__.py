"""madfile.yaml: the format (model), loading with positions (load), semantic checks (check),
and its JSON Schema (schema)."""
