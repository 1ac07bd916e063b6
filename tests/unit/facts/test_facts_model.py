"""HostFacts as a value: JSON round trip, a stable text, tolerant of other versions, strict on types."""

from __future__ import annotations

import json

import pytest

from madengine.facts import FACT_FIELDS, HostFacts

GPU_HOST = HostFacts(
    hostname="gpu-1", os="Ubuntu 22.04.4 LTS", kernel="6.8.0-45-generic", arch="x86_64", docker="27.3.1",
    gpu_vendor="AMD", gpu_count=8, gpu_arch="gfx942", gpu_product="AMD Instinct MI300X", driver="6.8.5",
    rocm="6.2.0", cuda=None)


def test_json_round_trip() -> None:
    assert HostFacts.from_json(GPU_HOST.to_json()) == GPU_HOST
    assert HostFacts.from_json(HostFacts().to_json()) == HostFacts()
    assert HostFacts.from_dict(GPU_HOST.to_dict()) == GPU_HOST


def test_json_is_canonical() -> None:
    text = GPU_HOST.to_json()
    assert list(json.loads(text)) == sorted(FACT_FIELDS)
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    again = HostFacts(**{k: GPU_HOST.to_dict()[k] for k in reversed(FACT_FIELDS)})
    assert again.to_json() == text


def test_to_dict_keeps_the_field_order() -> None:
    assert list(GPU_HOST.to_dict()) == list(FACT_FIELDS)
    assert FACT_FIELDS[:3] == ("hostname", "os", "kernel")


def test_unicode_survives() -> None:
    facts = HostFacts(hostname="gpu-é", gpu_product="Radeon™ PRO W7900")
    assert "™" in facts.to_json()
    assert HostFacts.from_json(facts.to_json().encode("utf-8")) == facts


def test_a_newer_madengines_keys_are_ignored_and_missing_ones_unknown() -> None:
    data = {**GPU_HOST.to_dict(), "numa": "balanced", "pci_topology": [1, 2]}
    del data["cuda"], data["driver"]
    facts = HostFacts.from_dict(data)
    assert (facts.driver, facts.cuda, facts.rocm) == (None, None, "6.2.0")


@pytest.mark.parametrize("text", [
    "[]", "null", "12", '"x"', "{", b"\xff\xfe",
    '{"gpu_count": "8"}', '{"gpu_count": true}', '{"gpu_count": -1}', '{"gpu_count": 1.0}',
    '{"gpu_vendor": "Intel"}', '{"gpu_vendor": null}', '{"rocm": 6.2}', '{"hostname": ["a"]}',
])
def test_bad_json_is_a_value_error(text: str | bytes) -> None:
    with pytest.raises(ValueError):
        HostFacts.from_json(text)


def test_constructor_checks_vendor_and_count() -> None:
    with pytest.raises(ValueError, match="gpu_vendor"):
        HostFacts(gpu_vendor="amd")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="gpu_count"):
        HostFacts(gpu_count=-1)


def test_archs_and_has_gpus() -> None:
    assert HostFacts(gpu_vendor="AMD", gpu_count=3, gpu_arch="gfx908,gfx90a").archs == ("gfx908", "gfx90a")
    assert HostFacts().archs == ()
    assert GPU_HOST.has_gpus and not HostFacts().has_gpus
    assert not HostFacts(gpu_vendor="AMD", gpu_count=0).has_gpus


def test_frozen_and_hashable() -> None:
    with pytest.raises(AttributeError):
        GPU_HOST.rocm = "6.3.1"  # type: ignore[misc]
    assert len({GPU_HOST, HostFacts.from_json(GPU_HOST.to_json())}) == 1
