"""Models declared in Python, as MAD's scripts/<dir>/get_models_json.py do.

madengine names them `dyn/<name>`; `dockerfile` and `scripts` are relative to this directory.
"""

from madengine.tools.discover_models import CustomModel

# A model given in full.
small = CustomModel(
    name="small",
    dockerfile="../../docker/dummy",
    scripts="run.sh",
    n_gpus="1",
    owner="mad.support@amd.com",
    tags=["dummies", "dynamic"],
    args="--size 256",
    timeout=600,
)


class SizedModel(CustomModel):
    """A model that fills in its data in update_model(), called by madengine after discovery."""

    def update_model(self) -> None:
        self.dockerfile = "../../docker/dummy"
        self.scripts = "run.sh"
        self.n_gpus = "1"
        self.owner = "mad.support@amd.com"
        self.args = "--size 1024"


large = SizedModel(name="large", tags=["dynamic"])


def list_models():
    return [small, large]
