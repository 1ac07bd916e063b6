"""An `ssh` target as the madfile declares it, for the ssh backend's tests.

Until the madfile's `SshTarget` has every key of issue 8 (name, env, host_key_check, container,
max_parallel_per_host), a stand-in of the same shape; then this returns the real model.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Host(BaseModel):
    model_config = ConfigDict(extra="forbid")
    address: str
    port: int = 22
    user: str | None = None
    key: str | None = None
    gpus: int | None = None
    name: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    gpu_vendor: str | None = None


class _SshTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")
    backend: Literal["ssh"] = "ssh"
    hosts: list[_Host]
    host_key_check: Literal["strict", "accept-new"] = "strict"
    container: Literal["docker", "none"] = "docker"
    workdir: str = "~/.madengine"
    max_parallel_per_host: int | None = None


def ssh_target(**keys: Any) -> Any:
    return _SshTarget(backend="ssh", **keys)
