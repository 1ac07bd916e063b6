"""data.json: reading its providers, and what a model's `data` field resolves to.

The shapes are the real ones: ROCm/MAD's `{"huggingface": {}}`, ROCm madengine's test fixture
`{"dummy_data_local": {"local": {"path": "/tmp"}}}`, and the provider types of its dataprovider.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from madengine.errors import ConfigError, Diagnostic
from madengine.mad.data import (
    NETWORK_HINT,
    DataBinding,
    DataMount,
    DataPrepare,
    DataProvider,
    load_data,
    resolve_data,
)
from tests.unit.mad.conftest import WritePackage

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "mad-package"
WHERE = "models.json[3].data"


def data_json(document: object) -> dict[str, object]:
    return {"data.json": document}


def rendered(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return [d.render() for d in exc.value.diagnostics]


# --- load_data ------------------------------------------------------------------------------------


def test_a_package_without_data_json_has_no_data(write_package: WritePackage) -> None:
    assert load_data(write_package({"models.json": []})) == {}


def test_the_example_declares_a_local_sample() -> None:
    data = load_data(EXAMPLE)
    assert data == {"sample": (DataProvider("sample", "local", "data/sample", False, {"path": "data/sample"}),)}
    assert data["sample"][0].line == 3
    assert (EXAMPLE / "data/sample/values.csv").is_file()


def test_rocm_mad_data_json_has_a_name_without_providers(write_package: WritePackage) -> None:
    assert load_data(write_package(data_json({"huggingface": {}}))) == {"huggingface": ()}


def test_providers_come_in_rocm_search_order(write_package: WritePackage) -> None:
    root = write_package(data_json({"imagenet": {
        "aws": {"path": "s3://bucket/imagenet"}, "gcs": {"path": "gs://x"}, "nas": {"path": "/nas/imagenet"},
        "local": {"path": "/data/imagenet"}, "minio": {"path": "mad/imagenet"}, "custom": {"path": "s.sh"}}}))
    warnings: list[Diagnostic] = []
    assert [p.type for p in load_data(root, warnings=warnings)["imagenet"]] == [
        "custom", "local", "minio", "nas", "aws", "gcs"]
    (warning,) = warnings
    assert warning.render() == ("data.json:6:9: warning: imagenet.gcs: data 'imagenet': unknown provider type "
                                "'gcs'; ROCm madengine never uses it (hint: provider types are custom, local, "
                                "minio, nas, aws)")


def test_a_misspelt_provider_type_suggests_the_right_one(write_package: WritePackage) -> None:
    warnings: list[Diagnostic] = []
    load_data(write_package(data_json({"d": {"locl": {"path": "/d"}}})), warnings=warnings)
    assert warnings[0].hint == "did you mean local?"


@pytest.mark.parametrize(("value", "expected"), [
    (None, False), (True, True), (False, False), ("true", True), ("false", False), (" TRUE ", True)])
def test_readwrite_accepts_booleans_and_rocm_strings(write_package: WritePackage, value: object,
                                                     expected: bool) -> None:
    config = {"path": "/d"} if value is None else {"path": "/d", "readwrite": value}
    assert load_data(write_package(data_json({"d": {"local": config}})))["d"][0].readwrite is expected


def test_invalid_json_is_pinned_to_its_line_and_column(write_package: WritePackage) -> None:
    root = write_package({"data.json": '{\n  "d": {\n    "local": {"path": "/d"\n  }\n}\n'})
    with pytest.raises(ConfigError) as exc:
        load_data(root)
    (line,) = rendered(exc)
    assert line.startswith("data.json:6:1: error: invalid JSON: Expecting ',' delimiter")


def test_every_malformed_entry_is_reported_at_once_with_its_line(write_package: WritePackage) -> None:
    root = write_package(data_json({
        "ok": {"local": {"path": "/ok"}},
        "not_an_object": ["local"],
        "bad_config": {"local": "/path"},
        "bad_keys": {"local": {"path": 3, "home": ["x"], "readwrite": "yes", "args": "'unclosed"}},
    }))
    with pytest.raises(ConfigError) as exc:
        load_data(root)
    text = (root / "data.json").read_text().splitlines()
    assert [(d.key_path, d.message) for d in exc.value.diagnostics] == [
        ("not_an_object", "data 'not_an_object' must be an object of providers, not a list"),
        ("bad_config.local", "data 'bad_config', provider 'local': the config must be an object, not a string"),
        ("bad_keys.local.path", "data 'bad_keys', provider 'local': `path` must be a string, not a number"),
        ("bad_keys.local.home", "data 'bad_keys', provider 'local': `home` must be a string, not a list"),
        ("bad_keys.local.readwrite", "data 'bad_keys', provider 'local': `readwrite` must be true, false, "
                                     '"true" or "false", not a string'),
        ("bad_keys.local.args", "data 'bad_keys', provider 'local': `args` cannot be split into arguments: "
                                "No closing quotation"),
    ]
    for diag in exc.value.diagnostics:
        assert diag.file == "data.json" and diag.line is not None
        assert f'"{diag.key_path.split(".")[-1]}":' in text[diag.line - 1]


def test_the_top_level_must_be_an_object(write_package: WritePackage) -> None:
    with pytest.raises(ConfigError) as exc:
        load_data(write_package(data_json([{"local": {"path": "/d"}}])))
    assert rendered(exc) == ["data.json:1:1: error: the top level must be a JSON object, not a list"]


def test_unknown_config_keys_are_kept_and_warned_about(write_package: WritePackage) -> None:
    warnings: list[Diagnostic] = []
    data = load_data(write_package(data_json({"d": {"local": {"path": "/d", "size": "10G"}}})), warnings=warnings)
    assert data["d"][0].raw == {"path": "/d", "size": "10G"}
    assert [(w.key_path, w.message) for w in warnings] == [
        ("d.local.size", "data 'd', provider 'local': unknown key `size`; kept")]


def test_an_unknown_key_is_one_warning_where_it_first_appears_with_how_many_providers_have_it(
        write_package: WritePackage) -> None:
    # It was a warning per provider: 70,000 lines for a data.json of 10,000 names with seven unknown keys.
    document = {f"d{i}": {"local": {"path": "/d", "size": "1G", **({"tier": 1} if i else {})}} for i in range(1000)}
    warnings: list[Diagnostic] = []
    load_data(write_package(data_json(document)), warnings=warnings)
    assert [(w.line, w.key_path, w.message) for w in warnings] == [
        (5, "d0.local.size", "data 'd0', provider 'local': unknown key `size` (also in 999 other providers); kept"),
        (12, "d1.local.tier", "data 'd1', provider 'local': unknown key `tier` (also in 998 other providers); kept")]


# --- resolve_data ---------------------------------------------------------------------------------


def test_a_model_without_data_resolves_to_none() -> None:
    assert resolve_data("", {}, WHERE) is None
    assert resolve_data("  ", {"d": ()}, WHERE) is None


def test_the_example_sample_is_mounted_read_only_from_the_package() -> None:
    binding = resolve_data("sample", load_data(EXAMPLE), WHERE)
    assert binding is not None
    mount = DataMount(name="sample", provider_type="local", host_path="data/sample", container_path="/data_dlm_0",
                      readwrite=False, env={"MAD_DATAHOME": "/data_dlm_0", "MAD_DATANAME": "sample"},
                      in_package=True)
    assert binding.mounts == (mount,)
    assert binding.env == {"MAD_DATANAME": "sample", "MAD_DATAHOME": "/data_dlm_0"}
    assert binding.provider_type == "local" and binding.prepare == ()
    assert binding.package_paths == ("data/sample",)
    assert mount.host_path_under(EXAMPLE) == EXAMPLE / "data/sample"


def test_rocm_madengine_fixture_mounts_an_absolute_host_path(write_package: WritePackage) -> None:
    data = load_data(write_package(data_json({"dummy_data_local": {"local": {"path": "/tmp"}}})))
    binding = resolve_data("dummy_data_local", data, WHERE)
    assert binding is not None
    (mount,) = binding.mounts
    assert (mount.host_path, mount.in_package, mount.container_path) == ("/tmp", False, "/data_dlm_0")
    assert mount.host_path_under(Path("/anywhere")) == Path("/tmp")
    assert binding.package_paths == ()


def test_a_name_without_providers_only_sets_mad_dataname() -> None:
    """ROCm/MAD's 81 `huggingface` models: no mount, no MAD_DATAHOME, as ROCm madengine does."""
    assert resolve_data("huggingface", {"huggingface": ()}, WHERE) == DataBinding(
        name="huggingface", env={"MAD_DATANAME": "huggingface"})


def test_home_and_readwrite_are_honoured(write_package: WritePackage) -> None:
    data = load_data(write_package(data_json({"d": {"local": {"path": "./shared/../d/", "home": "/data/d",
                                                              "readwrite": "true"}}})))
    binding = resolve_data("d", data, WHERE)
    assert binding is not None
    assert binding.mounts == (DataMount("d", "local", "d", "/data/d", True,
                                        {"MAD_DATAHOME": "/data/d", "MAD_DATANAME": "d"}, in_package=True),)
    assert binding.env["MAD_DATAHOME"] == "/data/d"  # the mount point (ROCm would say /data/d_0)


def test_a_relative_path_outside_the_package_is_not_in_it(write_package: WritePackage) -> None:
    data = load_data(write_package(data_json({"d": {"local": {"path": "../datasets/d"}}})))
    binding = resolve_data("d", data, WHERE)
    assert binding is not None and binding.mounts[0].host_path == "../datasets/d"
    assert not binding.mounts[0].in_package and binding.package_paths == ()


def test_local_wins_over_network_providers(write_package: WritePackage) -> None:
    data = load_data(write_package(data_json({"d": {"nas": {"path": "/nas/d"}, "local": {"path": "/d"}}})))
    binding = resolve_data("d", data, WHERE)
    assert binding is not None and binding.provider_type == "local"


def test_custom_comes_first_and_runs_its_script_in_the_data_home(write_package: WritePackage) -> None:
    data = load_data(write_package(data_json({"d": {
        "local": {"path": "/d"},
        "custom": {"path": "scripts/common/data/get_d.sh", "args": "--split 'train val'"}}})))
    binding = resolve_data("d", data, WHERE)
    assert binding is not None
    assert binding.provider_type == "custom" and binding.mounts == ()
    assert binding.prepare == (DataPrepare("d", "scripts/common/data/get_d.sh", ("--split", "train val"),
                                           "/data_dlm_0"),)
    assert binding.env == {"MAD_DATANAME": "d", "MAD_DATAHOME": "/data_dlm_0"}
    assert binding.package_paths == ("scripts/common/data/get_d.sh",)


def test_custom_with_mirrorlocal_keeps_the_data_on_the_host(write_package: WritePackage) -> None:
    data = load_data(write_package(data_json({"d": {"custom": {"path": "get.sh", "mirrorlocal": "/mirror",
                                                               "home": "/data/d"}}})))
    binding = resolve_data("d", data, WHERE)
    assert binding is not None
    assert binding.mounts == (DataMount("d", "custom", "/mirror/d", "/data/d", True,
                                        {"MAD_DATAHOME": "/data/d", "MAD_DATANAME": "d"}),)


def test_several_names_get_one_home_each(write_package: WritePackage) -> None:
    data = load_data(write_package(data_json({"a": {"local": {"path": "/a"}}, "hf": {},
                                              "b": {"local": {"path": "/b"}}})))
    binding = resolve_data("a,hf, b", data, WHERE)
    assert binding is not None
    assert [(m.name, m.container_path) for m in binding.mounts] == [("a", "/data_dlm_0"), ("b", "/data_dlm_2")]
    assert binding.env == {"MAD_DATANAME": "a,hf, b", "MAD_DATAHOME": "/data_dlm_0,/data_dlm_2"}
    assert binding.provider_type == "local,local"


@pytest.mark.parametrize("kinds", [["nas"], ["minio", "aws"], ["aws"]])
def test_network_only_data_is_an_error_before_anything_runs(write_package: WritePackage, kinds: list[str]) -> None:
    data = load_data(write_package(data_json({"imagenet": {k: {"path": f"{k}://imagenet"} for k in kinds}})))
    with pytest.raises(ConfigError) as exc:
        resolve_data("imagenet", data, WHERE)
    (diag,) = exc.value.diagnostics
    assert diag.key_path == WHERE and diag.hint == NETWORK_HINT
    assert diag.message.startswith(f"data 'imagenet' is provided only by {kinds[0]} (data.json:3")
    assert diag.message.endswith(f"madengine cannot fetch {'/'.join(sorted(kinds, key=kinds.index))} data")
    assert diag.hint == ("this provider needs network storage; use a local provider or mount the data with "
                         "docker_mounts")


def test_unknown_provider_types_only_is_an_error(write_package: WritePackage) -> None:
    data = load_data(write_package(data_json({"d": {"gcs": {"path": "gs://d"}}})))
    with pytest.raises(ConfigError) as exc:
        resolve_data("d", data, WHERE)
    assert rendered(exc) == [
        "error: models.json[3].data: data 'd' has only unknown provider types: gcs (data.json:3) (hint: provider "
        "types are custom, local, minio, nas, aws; use a local provider or mount the data with docker_mounts)"]


def test_an_undeclared_name_suggests_close_ones(write_package: WritePackage) -> None:
    data = load_data(write_package(data_json({"imagenet": {}, "imagenet21k": {}, "squad": {}})))
    with pytest.raises(ConfigError) as exc:
        resolve_data("imagenett", data, WHERE)
    assert rendered(exc) == [
        "error: models.json[3].data: data 'imagenett' is not declared in data.json (hint: did you mean imagenet "
        "or imagenet21k? declared data: imagenet, imagenet21k, squad)"]


def test_without_data_json_the_hint_says_so() -> None:
    with pytest.raises(ConfigError) as exc:
        resolve_data("huggingface", {}, WHERE)
    assert exc.value.diagnostics[0].hint == "the package has no data.json (or an empty one); declare " \
                                            "'huggingface' there"


def test_unusable_local_and_custom_configs_are_errors(write_package: WritePackage) -> None:
    data = load_data(write_package(data_json({
        "nopath": {"local": {"home": "/x"}},
        "mirror": {"local": {"path": "/m", "mirrorlocal": "/tmp"}},
        "outside": {"custom": {"path": "/opt/get.sh"}},
    })))
    with pytest.raises(ConfigError) as exc:
        resolve_data("nopath,mirror,outside,missing", data, WHERE)
    assert [(d.message, d.hint) for d in exc.value.diagnostics] == [
        ("data 'nopath' (local provider, data.json:3) has no `path`", "set `path` to the host directory to mount"),
        ("data 'mirror' (local provider, data.json:8): `mirrorlocal` cannot be given to a local provider",
         "remove it: local data is mounted in place"),
        ("data 'outside' (custom provider, data.json:14): the script '/opt/get.sh' is not inside the package",
         "custom data scripts live in the package, usually under scripts/common/data/"),
        ("data 'missing' is not declared in data.json", "declared data: mirror, nopath, outside"),
    ]


def test_resolving_probes_no_host_path(write_package: WritePackage) -> None:
    """Validation must not depend on the machine: a path that exists only on the target is fine."""
    data = load_data(write_package(data_json({"d": {"local": {"path": "/nowhere/on/this/host"}}})))
    binding = resolve_data("d", data, WHERE)
    assert binding is not None and binding.mounts[0].host_path == "/nowhere/on/this/host"
