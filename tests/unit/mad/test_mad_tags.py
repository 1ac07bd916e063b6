"""ROCm madengine's tag selection: names, tags, all, dir scoping, tag arguments, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from madengine.errors import ConfigError
from madengine.mad.discover import discover_package
from madengine.mad.model import MadModel, SelectedModel
from madengine.mad.tags import ModelIndex, UnknownTagError, parse_tag, resolve_tag, select_models, split_tags
from tests.unit.mad.conftest import WritePackage, entry


@pytest.fixture
def models(write_package: WritePackage) -> tuple[MadModel, ...]:
    root: Path = write_package({
        "models.json": [
            entry("dummy", tags=["dummies"], args="--x 1"),
            entry("pyt_bert", tags=["pyt", "bert"]),
            entry("pyt_gpt2", tags=["pyt", "gpt2", "pyt"]),
            entry("jax_llama", tags=["jax", "llama"]),
        ],
        "scripts/dummy2/models.json": [
            entry("model1", tags=["dummies", "group_2"]),
            entry("model2", tags=["dummies", "group_2"]),
            entry("other", tags=["pyt"]),
        ],
        "scripts/dummy3/get_models_json.py": """\
            from madengine.utils.discover_models import CustomModel
            def list_models():
                return [CustomModel(name="model3", dockerfile="d", scripts="s", tags=["dummies", "group_3"])]
            """,
    })
    return discover_package(root).models


def names(selected: list[SelectedModel]) -> list[str]:
    return [s.model.name for s in selected]


@pytest.mark.parametrize(("tag", "expected"), [
    ("name:k=v:flag", ("name", (("k", "v"), ("flag", None)))),
    (" dummy : batch_size = 512 : :verbose ", ("dummy", (("batch_size", "512"), ("verbose", None)))),
    ("dummy3:dummy_3:batch_size=512", ("dummy3", (("dummy_3", None), ("batch_size", "512")))),
    ("m:config=a=b", ("m", (("config", "a=b"),))),
    ("m:empty=", ("m", (("empty", ""),))),
    ("dir/all", ("dir/all", ())),
])
def test_parse_tag(tag: str, expected: tuple[str, tuple[tuple[str, str | None], ...]]) -> None:
    assert parse_tag(tag) == expected


@pytest.mark.parametrize("tag", ["", " : ", ":k=v"])
def test_a_tag_without_a_selector_is_an_error(tag: str) -> None:
    with pytest.raises(ConfigError):
        parse_tag(tag)


def test_a_tag_argument_without_a_name_is_an_error() -> None:
    with pytest.raises(ConfigError, match="has no name"):
        parse_tag("dummy:=5")


def test_split_tags_takes_lists_and_comma_separated_strings() -> None:
    assert split_tags("a, b,,c ") == ["a", "b", "c"]
    assert split_tags(["a,b", " c ", ""]) == ["a", "b", "c"]


def test_a_tag_selects_by_name_or_by_tag_in_package_order(models: tuple[MadModel, ...]) -> None:
    assert names(select_models(models, "pyt_bert")) == ["pyt_bert"]
    assert names(select_models(models, "pyt")) == ["pyt_bert", "pyt_gpt2", "dummy2/other"]
    assert names(select_models(models, "dummies")) == [
        "dummy", "dummy2/model1", "dummy2/model2", "dummy3/model3"]
    assert names(select_models(models, "dummy2/model1")) == ["dummy2/model1"]
    assert names(select_models(models, "dummy3/model3")) == ["dummy3/model3"]


def test_all_selects_every_model(models: tuple[MadModel, ...]) -> None:
    assert names(select_models(models, "all")) == [m.name for m in models]


def test_dir_all_and_dir_tag_scope_to_a_directory(models: tuple[MadModel, ...]) -> None:
    assert names(select_models(models, "dummy2/all")) == ["dummy2/model1", "dummy2/model2", "dummy2/other"]
    assert names(select_models(models, "dummy2/pyt")) == ["dummy2/other"]
    assert names(select_models(models, "dummy3/all")) == ["dummy3/model3"]
    assert names(select_models(models, "dummy2/group_2:k=v")) == ["dummy2/model1", "dummy2/model2"]


def test_tag_arguments_are_appended_to_the_args(models: tuple[MadModel, ...]) -> None:
    (selected,) = select_models(models, "dummy:batch_size=512:verbose")

    assert selected.tag_args == (("batch_size", "512"), ("verbose", None))
    assert selected.args == "--x 1 --batch_size 512 --verbose"
    assert selected.model.args == "--x 1"


def test_comma_separated_and_listed_tags_combine_in_first_selection_order(
        models: tuple[MadModel, ...]) -> None:
    selected = select_models(models, ["jax_llama, dummy2/all", "pyt"])

    assert names(selected) == ["jax_llama", "dummy2/model1", "dummy2/model2", "dummy2/other", "pyt_bert",
                               "pyt_gpt2"]


def test_a_model_selected_twice_is_one_model_unless_its_tag_arguments_differ(
        models: tuple[MadModel, ...]) -> None:
    assert names(select_models(models, "dummy,dummies,dummy")) == [
        "dummy", "dummy2/model1", "dummy2/model2", "dummy3/model3"]

    selected = select_models(models, ["dummy:bs=1", "dummy:bs=2", "dummy:bs=1", "dummy"])

    assert [(s.model.name, s.args) for s in selected] == [
        ("dummy", "--x 1 --bs 1"), ("dummy", "--x 1 --bs 2"), ("dummy", "--x 1")]


def test_no_tags_select_nothing(models: tuple[MadModel, ...]) -> None:
    assert select_models(models, []) == []


def test_resolve_tag_selects_for_one_tag_and_accepts_an_index(models: tuple[MadModel, ...]) -> None:
    index = ModelIndex(models)
    assert names(resolve_tag(models, "group_2")) == ["dummy2/model1", "dummy2/model2"]
    assert names(resolve_tag(index, "dummy2/all")) == names(select_models(index, "dummy2/all"))


def test_an_unknown_tag_suggests_close_names_and_tags(models: tuple[MadModel, ...]) -> None:
    with pytest.raises(UnknownTagError) as caught:
        select_models(models, "pyt_bret")

    error = caught.value
    assert isinstance(error, ConfigError)
    assert error.tag == "pyt_bret" and error.suggestions[0] == "pyt_bert"
    assert len(error.suggestions) <= 5
    assert str(error).startswith("tag 'pyt_bret' selects no model; did you mean 'pyt_bert'")
    assert "madengine discover" in error.hint
    assert error.diagnostics[0].hint == error.hint


def test_an_unknown_scoped_tag_suggests_within_the_directory(models: tuple[MadModel, ...]) -> None:
    with pytest.raises(UnknownTagError) as caught:
        resolve_tag(models, "dummy2/group2")

    assert "dummy2/group_2" in caught.value.suggestions


def test_a_tag_far_from_everything_has_no_suggestions(models: tuple[MadModel, ...]) -> None:
    with pytest.raises(UnknownTagError) as caught:
        select_models(models, "zzzzzzzz")

    assert caught.value.suggestions == () and str(caught.value) == "tag 'zzzzzzzz' selects no model"


def test_every_unknown_tag_is_reported_at_once(models: tuple[MadModel, ...]) -> None:
    with pytest.raises(UnknownTagError) as caught:
        select_models(models, ["dummy", "nope1", "pyt", "nope2:k=v", "nodir/all"])

    assert caught.value.tags == ("nope1", "nope2:k=v", "nodir/all")
    assert [d.message.split(" selects")[0] for d in caught.value.diagnostics] == [
        "tag 'nope1'", "tag 'nope2:k=v'", "tag 'nodir/all'"]


def test_selection_from_a_large_package_is_indexed() -> None:
    """Thousands of models and tags: every model of a directory, each tag once, through the index."""
    models = tuple(MadModel(name=f"d{i % 50}/m{i}", dockerfile="d", scripts="s",
                            tags=(f"t{i % 100}", "all_of_them"), directory=f"d{i % 50}") for i in range(6000))
    index = ModelIndex(models)

    assert len(select_models(index, "all")) == 6000
    assert len(select_models(index, [f"t{i}" for i in range(100)])) == 6000
    assert len(select_models(index, [f"d{i}/all" for i in range(50)] + ["all_of_them"])) == 6000
    assert names(select_models(index, "d7/t7")) == [f"d7/m{i}" for i in range(6000) if i % 100 == 7]


@pytest.mark.parametrize("selector", [
    "all", "dummy", "dummies", "pyt", "group_2", "dummy2/all", "dummy2/pyt", "dummy2/model1", "dummy3/all",
    "dummy3/model3", "dummy2/nope", "nodir/all", "a/b/c", "/all", "dummy2/", "nothing"])
def test_a_single_tag_scan_selects_what_the_index_selects(models: tuple[MadModel, ...],
                                                          selector: str) -> None:
    index = ModelIndex(models)

    assert list(index.scan(selector)) == list(index.positions(selector))


def test_tags_written_with_a_directory_prefix_still_select(write_package: WritePackage) -> None:
    """Older madengine prefixed the tags of scripts/<dir>/ models with `<dir>/`; such tags still work."""
    root = write_package({
        "models.json": [entry("legacy", tags=["dummy2/group_2"])],
        "scripts/dummy2/models.json": [entry("model1", tags=["group_2"]), entry("model2", tags=["other"])],
    })
    models = discover_package(root).models
    index = ModelIndex(models)

    assert names(select_models(models, "dummy2/group_2")) == ["legacy", "dummy2/model1"]
    assert list(index.scan("dummy2/group_2")) == list(index.positions("dummy2/group_2")) == [0, 1]
