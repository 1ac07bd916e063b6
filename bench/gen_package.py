#!/usr/bin/env python3
"""Write a synthetic MAD package (6,134 models) for benchmarking madengine.

Layout written under DIR (everything relative to DIR):

    models.json                       the real ROCm MAD root models.json (134 models, bench/data/)
    scripts/static_NN/models.json     50 directories x 100 static models, paths relative to the directory
    scripts/static_NN/run*.sh
    scripts/dynamic_NN/get_models_json.py
                                      10 directories x 100 models returned by list_models() as CustomModel
    scripts/dynamic_NN/run*.sh
    scripts/<dir>/...                 every run script the root models.json references
    docker/<prefix>.ubuntu.none.Dockerfile
                                      one per dockerfile prefix used, `# CONTEXT` for gpu_vendor NONE
    madfile.yaml                      selects `all` for a `cpu` context and a `box` docker target

The output is a pure function of the seed: the same seed gives the same bytes.
Standard library only.

    python bench/gen_package.py bench/out/pkg --seed 0
"""

from __future__ import annotations

import argparse
import builtins
import dataclasses
import json
import random
import shutil
import sys
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT_MODELS = HERE / "data" / "mad-models.json"

N_STATIC_DIRS = 50
N_DYNAMIC_DIRS = 10
MODELS_PER_DIR = 100
MARKER = ".madengine-bench-package"

MADFILE = """\
version: 1
package: .
models: [{select: all}]
contexts: {cpu: {gpu_vendor: NONE, guest_os: UBUNTU}}
targets: {box: {backend: docker}}
"""

RUN_SH = """\
#!/usr/bin/env bash
# Synthetic benchmark script written by bench/gen_package.py.
echo "model: ${MAD_MODEL_NAME:-unknown} args: $*"
echo "performance: 1.0 x"
"""

RUN_MULTI_SH = """\
#!/usr/bin/env bash
# Synthetic benchmark script with multiple results, written by bench/gen_package.py.
out="${MAD_OUTPUT_CSV:-perf_multi.csv}"
printf 'model,performance,metric\\nsmall,1.0,x\\nlarge,2.0,x\\n' > "$out"
echo "performance: 1.0 x"
"""

DOCKERFILE = """\
# CONTEXT {{'gpu_vendor': 'NONE', 'guest_os': 'UBUNTU'}}
# Synthetic image for the madengine benchmark package ({prefix}).
ARG BASE_DOCKER={base}
FROM $BASE_DOCKER
RUN echo {prefix} > /etc/madengine-bench-image
"""

BASE_IMAGES = ("docker.io/library/ubuntu:22.04", "docker.io/library/ubuntu:24.04",
               "docker.io/library/debian:12-slim")

# Synthetic families: each static/dynamic directory draws its dockerfiles and tags from these.
FAMILIES = ("llama", "mixtral", "qwen", "deepseek", "gemma", "mistral", "phi", "bert", "gpt2", "t5",
            "resnet", "vit", "unet", "sdxl", "whisper", "mamba", "falcon", "opt", "bloom", "gptj")
FRAMEWORKS = ("pyt", "jax", "vllm", "sglang", "megatron", "primus")
SIZES = ("125m", "350m", "1b", "3b", "7b", "8b", "13b", "34b", "70b", "405b")
PRECISIONS = ("", "fp16", "bf16", "fp8", "fp32", "nanoo_fp8")
PHASES = ("training", "inference", "finetune", "pretrain", "serving")
N_GPUS = ("-1", "-1", "-1", "1", "8")


def _json_text(value: Any) -> str:
    """MAD style: 4-space indent, key order as written, trailing newline."""
    return json.dumps(value, indent=4) + "\n"


def _write(path: Path, text: str, executable: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    if executable:
        path.chmod(0o755)


def _dockerfile_pool(rng: random.Random) -> list[str]:
    """Synthetic dockerfile prefixes shared by the generated directories (real MAD shares images too)."""
    return sorted({f"synth_{fw}_{fam}" for fw, fam in
                   ((rng.choice(FRAMEWORKS), rng.choice(FAMILIES)) for _ in range(40))})


def _model_fields(rng: random.Random, i: int, family: str, framework: str) -> dict[str, Any]:
    size = rng.choice(SIZES)
    precision = rng.choice(PRECISIONS)
    phase = rng.choice(PHASES)
    batch = rng.choice((1, 8, 16, 32, 64, 128))
    seq = rng.choice((128, 512, 1024, 2048, 4096))
    tags = [framework, family, phase, f"{family}-{size}"]
    if precision:
        tags.append(precision)
    if rng.random() < 0.1:
        tags.append("perf")
    return {
        "name": f"{framework}_{family}_{size}_{phase}_{i:03d}",
        "n_gpus": rng.choice(N_GPUS),
        "owner": "mad.support@amd.com",
        "training_precision": precision,
        "tags": tags,
        "args": f"--batch-size {batch} --seq-len {seq}" + (f" --precision {precision}" if precision else ""),
    }


def _static_dir(rng: random.Random, pool: list[str]) -> tuple[list[dict[str, Any]], set[str], set[str]]:
    """100 models for one scripts/static_NN/models.json; returns (models, dockerfile prefixes, scripts)."""
    prefixes = rng.sample(pool, k=rng.randint(1, 3))
    family = rng.choice(FAMILIES)
    framework = rng.choice(FRAMEWORKS)
    models: list[dict[str, Any]] = []
    used_prefixes: set[str] = set()
    scripts: set[str] = set()
    for i in range(MODELS_PER_DIR):
        fields = _model_fields(rng, i, family, framework)
        prefix = rng.choice(prefixes)
        multi = rng.random() < 0.2
        script = "run_multi.sh" if multi else "run.sh"
        entry: dict[str, Any] = {
            "name": fields["name"],
            "url": f"https://example.org/{framework}/{family}",
            "dockerfile": f"../../docker/{prefix}",
            "scripts": script,
            "n_gpus": fields["n_gpus"],
            "owner": fields["owner"],
            "training_precision": fields["training_precision"],
            "tags": fields["tags"],
            "args": fields["args"],
        }
        if multi:
            entry["multiple_results"] = "perf_multi.csv"
        if rng.random() < 0.3:
            entry["timeout"] = rng.choice((-1, 600, 3600, 7200))
        models.append(entry)
        used_prefixes.add(prefix)
        scripts.add(script)
    return models, used_prefixes, scripts


def _dynamic_script(rng: random.Random, pool: list[str], dirname: str) -> tuple[str, set[str], set[str]]:
    """Source of scripts/dynamic_NN/get_models_json.py, in the style of ROCm/MAD's dynamic scripts.

    Like scripts/primus_train/get_models_json.py in MAD, the models come from a loop over a table of
    configurations (there: a glob of YAML configs), all sharing one dockerfile and run script; like
    madengine's dummy3 fixture, one model is a CustomModel subclass that overrides update_model().
    """
    prefix = rng.choice(pool)
    family = rng.choice(FAMILIES)
    framework = rng.choice(FRAMEWORKS)
    configs: list[tuple[str, str, str, str, list[str]]] = []
    for i in range(MODELS_PER_DIR - 1):
        f = _model_fields(rng, i, family, framework)
        configs.append((f["name"], f["n_gpus"], f["training_precision"], f["args"], f["tags"]))
    table = "\n".join(f"    {c!r}," for c in configs)
    source = f'''"""Synthetic dynamic model discovery for {dirname} (written by bench/gen_package.py).

Mimics ROCm/MAD scripts/*/get_models_json.py: list_models() returns CustomModel instances whose
dockerfile and scripts are relative to this directory; madengine prefixes the names with "{dirname}/".
"""

try:
    from madengine.utils.discover_models import CustomModel  # madengine v2
except ImportError:
    from madengine.tools.discover_models import CustomModel  # madengine v1

DOCKERFILE = "../../docker/{prefix}"

# (name, n_gpus, training_precision, args, tags): one row per model, as a config glob would give.
CONFIGS = [
{table}
]


class TunedModel(CustomModel):
    """A model whose fields are completed in update_model(), as madengine's dummy3 fixture does."""

    def update_model(self):
        self.dockerfile = DOCKERFILE
        self.scripts = "run.sh"
        self.n_gpus = "1"
        self.owner = "mad.support@amd.com"
        self.training_precision = "fp16"
        self.args = "--tuned"
        self.multiple_results = ""


def list_models():
    models = [
        TunedModel(
            name="tuned",
            dockerfile=DOCKERFILE,
            scripts="run.sh",
            tags=["{framework}", "{family}", "tuned"],
        )
    ]
    for name, n_gpus, precision, args, tags in CONFIGS:
        models.append(
            CustomModel(
                name=name,
                dockerfile=DOCKERFILE,
                scripts="run.sh",
                n_gpus=n_gpus,
                owner="mad.support@amd.com",
                timeout=3600,
                training_precision=precision,
                tags=list(tags),
                args=args,
            )
        )
    return models
'''
    return source, {prefix}, {"run.sh"}


def _clear(out: Path) -> None:
    """Empty OUT if it is a package this script wrote; refuse to touch anything else."""
    if not out.exists():
        return
    if not out.is_dir():
        raise SystemExit(f"gen_package: {out} exists and is not a directory")
    if not any(out.iterdir()):
        return
    if not (out / MARKER).is_file():
        raise SystemExit(f"gen_package: {out} is not empty and was not written by gen_package.py; "
                         "choose an empty or new directory")
    shutil.rmtree(out)


def generate(out: Path, seed: int = 0) -> dict[str, int]:
    """Write the package into OUT (replacing a package this script wrote there); return counts."""
    out = Path(out)
    _clear(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    _write(out / MARKER, f"seed {seed}\n")

    root_text = ROOT_MODELS.read_text(encoding="utf-8")
    root_models: list[dict[str, Any]] = json.loads(root_text)
    _write(out / "models.json", root_text)
    prefixes: set[str] = {str(m["dockerfile"]).removeprefix("docker/") for m in root_models}
    for script in sorted({str(m["scripts"]) for m in root_models}):
        _write(out / script, RUN_MULTI_SH if "multi" in script else RUN_SH, executable=True)

    pool = _dockerfile_pool(rng)
    n_static = 0
    for d in range(N_STATIC_DIRS):
        dirname = f"static_{d:02d}"
        models, used, scripts = _static_dir(rng, pool)
        _write(out / "scripts" / dirname / "models.json", _json_text(models))
        _write_scripts(out / "scripts" / dirname, scripts)
        prefixes |= used
        n_static += len(models)

    for d in range(N_DYNAMIC_DIRS):
        dirname = f"dynamic_{d:02d}"
        source, used, scripts = _dynamic_script(rng, pool, dirname)
        _write(out / "scripts" / dirname / "get_models_json.py", source)
        _write_scripts(out / "scripts" / dirname, scripts)
        prefixes |= used

    for prefix in sorted(prefixes):
        base = BASE_IMAGES[sum(map(ord, prefix)) % len(BASE_IMAGES)]
        text = DOCKERFILE.format(prefix=prefix, base=base)
        _write(out / "docker" / f"{prefix}.ubuntu.none.Dockerfile", text)

    _write(out / "madfile.yaml", MADFILE)
    n_dynamic = N_DYNAMIC_DIRS * MODELS_PER_DIR
    return {
        "root": len(root_models),
        "static": n_static,
        "dynamic": n_dynamic,
        "total": len(root_models) + n_static + n_dynamic,
        "dockerfiles": len(prefixes),
    }


def _write_scripts(directory: Path, scripts: Iterable[str]) -> None:
    for script in sorted(scripts):
        _write(directory / script, RUN_MULTI_SH if "multi" in script else RUN_SH, executable=True)


@dataclasses.dataclass
class _StubCustomModel:
    """Stand-in for madengine's CustomModel, so that counting does not depend on madengine."""

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
    tags: list[str] = dataclasses.field(default_factory=list)
    args: str = ""
    multiple_results: str = ""
    skip_gpu_arch: str = ""

    def update_model(self) -> None:
        pass


def _list_dynamic(script: Path) -> list[Any]:
    """Run a get_models_json.py's list_models() with `madengine.*` imports answered by a stub."""
    stub = types.SimpleNamespace(CustomModel=_StubCustomModel)

    def _import(name: str, globals_: Any = None, locals_: Any = None, fromlist: Any = (),
                level: int = 0) -> Any:
        if name == "madengine" or name.startswith("madengine."):
            return stub
        return builtins.__import__(name, globals_, locals_, fromlist, level)

    namespace: dict[str, Any] = {"__name__": "get_models_json", "__file__": str(script),
                                 "__builtins__": {**vars(builtins), "__import__": _import}}
    exec(compile(script.read_text(encoding="utf-8"), str(script), "exec"), namespace)
    return list(namespace["list_models"]())


def count_models(pkg: Path) -> dict[str, int]:
    """Count the models of a MAD package by parsing its files (madengine not needed)."""
    pkg = Path(pkg)
    root = len(json.loads((pkg / "models.json").read_text(encoding="utf-8")))
    static = dynamic = 0
    names: set[str] = set()
    for d in sorted((pkg / "scripts").iterdir()):
        if (d / "models.json").is_file():
            entries = json.loads((d / "models.json").read_text(encoding="utf-8"))
            static += len(entries)
            names |= {f"{d.name}/{e['name']}" for e in entries}
        if (d / "get_models_json.py").is_file():
            models = _list_dynamic(d / "get_models_json.py")
            dynamic += len(models)
            names |= {f"{d.name}/{m.name}" for m in models}
    return {"root": root, "static": static, "dynamic": dynamic, "total": root + static + dynamic,
            "unique_scoped_names": len(names)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a synthetic 6,134-model MAD package.")
    parser.add_argument("dir", type=Path,
                        help="output directory (created; replaced if written by this script)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0); same seed, same bytes")
    parser.add_argument("--check", action="store_true",
                        help="do not write: count the models of an existing package by parsing its files")
    args = parser.parse_args(argv)
    if args.check:
        print(json.dumps(count_models(args.dir), sort_keys=True))
        return 0
    counts = generate(args.dir, args.seed)
    print(f"wrote {args.dir}: {counts['total']} models (root {counts['root']}, static {counts['static']}, "
          f"dynamic {counts['dynamic']}), {counts['dockerfiles']} Dockerfiles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
