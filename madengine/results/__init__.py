"""Results (DESIGN §3, §7): MAD performance extraction, perf.csv and build_manifest.json export.

- `extract`: judge a finished run from its log (performance regex, multiple_results CSV, error patterns).
- `perfcsv`: attempts -> rows in ROCm madengine's perf.csv columns.
- `manifest`: realized images -> ROCm madengine's build_manifest.json.
- `table`: what `madengine results` selects and shows.
"""

from madengine.results.extract import extract_performance, find_error, judge, read_multiple_results

__all__ = ["extract_performance", "find_error", "judge", "read_multiple_results"]
