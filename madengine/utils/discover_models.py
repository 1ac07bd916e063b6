"""`CustomModel`, the class that MAD's `scripts/<dir>/get_models_json.py` scripts build models with.

It mirrors ROCm madengine's class field for field (same names, order, types and defaults), so that a
script written for ROCm madengine runs unchanged: `list_models()` returns instances of it (or of a
subclass), discovery prefixes each name with `<dir>/`, calls `update_model()`, then reads `to_dict()`.
This module is imported by user scripts, so it must stay light: standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class CustomModel:
    """A model declared in Python, with the same keys as a models.json entry.

    `n_gpus` is a string as in models.json ("-1" = all GPUs); `dockerfile` and `scripts` are relative
    to the script's directory; `timeout` is in seconds.
    """

    name: str
    dockerfile: str = ""
    dockercontext: str = ""
    scripts: str = ""
    url: str = ""
    cred: str = ""
    owner: str = ""
    data: str = ""
    n_gpus: str = "-1"
    timeout: int = 7200
    training_precision: str = ""
    tags: list[str] = field(default_factory=list)
    args: str = ""
    multiple_results: str = ""
    skip_gpu_arch: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The model as a models.json-like dict; lists and dicts are copied, as `asdict` would."""
        # dataclasses.asdict is several times slower, and dynamic packages return thousands of models.
        result = {f.name: getattr(self, f.name) for f in fields(self)}
        for key, value in result.items():
            if isinstance(value, (list, dict)):
                result[key] = _copy(value)
        return result

    def update_model(self) -> None:
        """Override to fill in the model's data after initialization.

        Discovery calls it once per model, after prefixing the name with `<dir>/` and before reading
        the fields. Changing `name` or `tags` here has no effect, as in ROCm madengine.
        """


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value


__all__ = ["CustomModel"]
