"""ROCm madengine's `--tags` selection over the models of a MAD package (DESIGN §3).

- `t` selects the models named `t` or tagged `t`; `all` selects every model.
- `dir/x` scopes to `scripts/<dir>/`: its models tagged `x`, the model named `dir/x`, or all of
  them for `dir/all`.
- `name:k=v:flag` passes ` --k v --flag` to the selected models' scripts.
- Tags can be given as a list and/or comma-separated; a model selected twice (with the same tag
  arguments) is selected once, where it was first selected.

Selection is index-based (name, tag and directory dictionaries built once), so selecting among
thousands of models with many tags costs little more than reading the answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from madengine.errors import ConfigError, Diagnostic
from madengine.mad.fastbuild import frozen_builder, gc_paused
from madengine.mad.model import MadModel, SelectedModel

TagArgs = tuple[tuple[str, "str | None"], ...]

ALL = "all"
_new_selected = frozen_builder(SelectedModel)  # thousands are built for `all`
_HINT = "run `madengine discover` to list the package's models and tags"


class UnknownTagError(ConfigError):
    """A tag that selects no model. `tag` is the (first) offending tag, `suggestions` close matches."""

    def __init__(self, tag: str, suggestions: Sequence[str] = (), *,
                 others: Sequence[tuple[str, Sequence[str]]] = ()) -> None:
        self.tag = tag
        self.suggestions = tuple(suggestions)
        self.tags = (tag, *(t for t, _ in others))
        self.hint = _HINT
        diagnostics = [Diagnostic(None, None, None, _message(t, s), hint=_HINT)
                       for t, s in ((tag, self.suggestions), *others)]
        super().__init__(diagnostics[0].message, hint=_HINT, diagnostics=diagnostics)


def _message(tag: str, suggestions: Sequence[str]) -> str:
    message = f"tag {tag!r} selects no model"
    if suggestions:
        message += f"; did you mean {', '.join(repr(s) for s in suggestions)}?"
    return message


def parse_tag(tag: str) -> tuple[str, TagArgs]:
    """Split `selector:k=v:flag` into the selector and its ((k, v), (flag, None)) arguments."""
    parts = [part for part in (p.strip() for p in tag.split(":")) if part]
    if not parts or not tag.split(":", 1)[0].strip():
        raise ConfigError(f"empty tag {tag!r}", hint="a tag is a model name, a tag, `dir/name` or `all`")
    args: list[tuple[str, str | None]] = []
    for part in parts[1:]:
        key, has_value, value = part.partition("=")
        key = key.strip()
        if not key:
            raise ConfigError(f"tag {tag!r}: argument {part!r} has no name",
                              hint="tag arguments are `name:key=value` or `name:flag`")
        args.append((key, value.strip() if has_value else None))
    return parts[0], tuple(args)


def split_tags(tags: Sequence[str] | str) -> list[str]:
    """Tags from a list and/or comma-separated strings, stripped, empty ones dropped."""
    if isinstance(tags, str):
        tags = [tags]
    return [tag for tag in (t.strip() for group in tags for t in group.split(",")) if tag]


class ModelIndex:
    """Name, tag and directory indexes over a package's models, built once, for fast selection."""

    def __init__(self, models: Sequence[MadModel]) -> None:
        self.models = tuple(models)
        self._indexed = False  # the dictionaries are built on the first selector other than `all`
        self._scanned = False  # one lookup was answered by a scan: the next ones use the index
        self._by_name: dict[str, int] = {}
        self._by_tag: dict[str, list[int]] = {}
        self._by_scope: dict[str, list[int]] = {}  # `<dir>` of `<dir>/<name>` -> models

    def _build(self) -> None:
        by_name, by_tag, by_scope = self._by_name, self._by_tag, self._by_scope
        for position, model in enumerate(self.models):
            by_name.setdefault(model.name, position)
            for tag in model.tags:
                tagged = by_tag.setdefault(tag, [])
                if not tagged or tagged[-1] != position:  # a tag listed twice on one model
                    tagged.append(position)
            scope, slash, _ = model.name.partition("/")
            if slash:
                by_scope.setdefault(scope, []).append(position)
        self._indexed = True

    def positions(self, selector: str) -> Sequence[int]:
        """Positions (in package order) of the models that a selector without arguments picks."""
        if selector == ALL:
            return range(len(self.models))
        if not self._indexed:
            self._build()
        tagged = self._by_tag.get(selector, ())
        scope, slash, rest = selector.partition("/")
        if slash and scope and rest and "/" not in rest:
            return _union(self._scoped(scope, rest, selector), tagged)
        named = self._by_name.get(selector)
        return tagged if named is None else _union([named], tagged)

    def _scoped(self, scope: str, rest: str, selector: str) -> Sequence[int]:
        members = self._by_scope.get(scope, ())
        if rest == ALL:
            return members
        tagged = set(self._by_tag.get(rest, ()))
        named = self._by_name.get(selector)
        if not tagged:
            return [] if named is None else [named]
        return [p for p in members if p in tagged or p == named]

    def scan(self, selector: str) -> Sequence[int]:
        """What `positions` returns, by one pass over the models instead of the index.

        For a single selector this is cheaper than building the index first.
        """
        if selector == ALL:
            return range(len(self.models))
        scope, slash, rest = selector.partition("/")
        if slash and scope and rest and "/" not in rest:
            prefix = scope + "/"
            return [p for p, m in enumerate(self.models)
                    if (m.name.startswith(prefix) and (rest == ALL or rest in m.tags or m.name == selector))
                    or selector in m.tags]
        return [p for p, m in enumerate(self.models) if m.name == selector or selector in m.tags]

    def resolve(self, tag: str) -> list[SelectedModel]:
        """The models one tag selects; UnknownTagError if none."""
        selector, args = parse_tag(tag)
        # A first lookup is answered by a scan (cheaper than building the index for it); a caller
        # resolving tag after tag, as the compiler does, gets the index from the second one on.
        positions = self.positions(selector) if self._indexed or self._scanned else self.scan(selector)
        self._scanned = True
        if not positions:
            raise UnknownTagError(tag, self.suggestions(selector))
        return [_new_selected({"model": self.models[p], "tag_args": args}) for p in positions]

    def select(self, tags: Sequence[str] | str) -> list[SelectedModel]:
        """The models a list of tags selects, each (model, tag arguments) once, in first-selection order.

        Every tag that selects nothing is reported, in one UnknownTagError.
        """
        with gc_paused():
            return self._select(tags)

    def _select(self, tags: Sequence[str] | str) -> list[SelectedModel]:
        seen: dict[TagArgs, set[int]] = {}  # tag arguments -> positions already selected with them
        selected: list[SelectedModel] = []
        unknown: list[tuple[str, Sequence[str]]] = []
        models = self.models
        tag_list = split_tags(tags)
        # One tag is answered by a scan, which costs less than building the index for it.
        lookup = self.positions if self._indexed or len(tag_list) > 1 else self.scan
        for tag in tag_list:
            selector, args = parse_tag(tag)
            positions = lookup(selector)
            if not positions:
                unknown.append((tag, self.suggestions(selector)))
                continue
            already = seen.setdefault(args, set())
            fresh = [p for p in positions if p not in already] if already else positions
            already.update(fresh)
            selected.extend(_new_selected({"model": models[p], "tag_args": args}) for p in fresh)
        if unknown:
            (tag, suggestions), *others = unknown
            raise UnknownTagError(tag, suggestions, others=others)
        return selected

    def suggestions(self, selector: str, limit: int = 5) -> list[str]:
        """Up to `limit` names, tags or `dir/all` selectors close to a selector that matched nothing."""
        import difflib  # only on this error path: keeps `madengine` start-up short

        if not self._indexed:
            self._build()
        candidates: set[str] = {ALL, *self._by_name, *self._by_tag}
        candidates.update(f"{scope}/{ALL}" for scope in self._by_scope)
        scope, slash, _ = selector.partition("/")
        if slash:
            candidates.update(f"{scope}/{tag}" for p in self._by_scope.get(scope, ())
                              for tag in self.models[p].tags)
        return difflib.get_close_matches(selector, sorted(candidates), n=limit, cutoff=0.6)


def resolve_tag(models: Sequence[MadModel] | ModelIndex, tag: str) -> list[SelectedModel]:
    """The models one tag (`t`, `dir/x`, `all`, with optional `:k=v:flag` arguments) selects."""
    return _index(models).resolve(tag)


def select_models(models: Sequence[MadModel] | ModelIndex, tags: Sequence[str] | str) -> list[SelectedModel]:
    """The models that tags select, like `madengine run --tags a,b --tags c`."""
    return _index(models).select(tags)


def _index(models: Sequence[MadModel] | ModelIndex) -> ModelIndex:
    return models if isinstance(models, ModelIndex) else ModelIndex(models)


def _union(first: Iterable[int], second: Sequence[int]) -> Sequence[int]:
    """Sorted union of two position lists (package order), without copying when one is empty."""
    first = list(first)
    if not second:
        return first
    if not first:
        return second
    return sorted(set(first).union(second))
