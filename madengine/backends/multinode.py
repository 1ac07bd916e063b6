"""The environment of one node of a multi-node job (`nnodes` > 1), as ROCm MAD's launchers expect it
(ROCm madengine's slurm.py and kubernetes_launcher_mixin.py): NNODES, NPROC_PER_NODE, NODE_RANK,
MASTER_ADDR, MASTER_PORT, and MAD_MULTI_NODE_RUNNER, the torchrun command a model script puts before
its own. Pure; each backend says how a node learns its rank and the master's address: as values (ssh),
or as shell expressions the node expands (`$SLURM_NODEID`, `$JOB_COMPLETION_INDEX`)."""

from __future__ import annotations

MASTER_PORT = 29500  # torchrun's default rendezvous port
LAUNCHER = "torchrun"  # perf.csv's `launcher` column for multi-node runs


def runner_command(nnodes: int, nproc_per_node: int, node_rank: str, master_addr: str, master_port: int | str) -> str:
    """MAD_MULTI_NODE_RUNNER. `node_rank` and `master_addr` are values, or `${VAR}` references the node's
    shell expands (the variable is then exported before it: see `node_env`)."""
    return (f"torchrun --nnodes={nnodes} --nproc_per_node={nproc_per_node} --node_rank={node_rank} "
            f"--master_addr={master_addr} --master_port={master_port}")


def node_env(nnodes: int, nproc_per_node: int, node_rank: str, master_addr: str,
             master_port: int | str = MASTER_PORT) -> dict[str, str]:
    """Every variable one node of the job gets, in the order they must be set (MAD_MULTI_NODE_RUNNER
    names the others). With `node_rank="${NODE_RANK}"` it is a template for a shell."""
    return {"NNODES": str(nnodes), "NPROC_PER_NODE": str(nproc_per_node), "NODE_RANK": node_rank,
            "MASTER_ADDR": master_addr, "MASTER_PORT": str(master_port),
            "MAD_MULTI_NODE_RUNNER": runner_command(nnodes, nproc_per_node, "${NODE_RANK}", "${MASTER_ADDR}",
                                                    master_port)}
