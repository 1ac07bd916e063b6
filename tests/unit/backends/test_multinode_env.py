"""The environment of a node of a multi-node job, as MAD's launchers read it."""

from __future__ import annotations

from madengine.backends.multinode import node_env


def test_a_node_gets_its_rank_the_master_and_the_torchrun_line_naming_them() -> None:
    env = node_env(2, 8, "1", "10.0.0.5")
    assert env == {"NNODES": "2", "NPROC_PER_NODE": "8", "NODE_RANK": "1", "MASTER_ADDR": "10.0.0.5",
                   "MASTER_PORT": "29500",
                   "MAD_MULTI_NODE_RUNNER": "torchrun --nnodes=2 --nproc_per_node=8 --node_rank=${NODE_RANK} "
                                            "--master_addr=${MASTER_ADDR} --master_port=29500"}
    assert list(env)[-1] == "MAD_MULTI_NODE_RUNNER"  # set last: it names the others
