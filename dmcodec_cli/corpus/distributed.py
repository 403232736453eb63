"""Running one corpus over several processes (torchrun) or machines: who does what, and meeting points.

Under ``torchrun`` (RANK / WORLD_SIZE / LOCAL_RANK in the environment) a gloo process group is started
for the barrier before the final merge and to gather failures. Without it, ``--num-shards`` /
``--shard-index`` select a share by hand (one store per machine, combined later by ``dmcodec merge``).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Sequence, TypeVar

import torch

from ..engine.device import pick_device
from ..errors import DmcodecError

T = TypeVar("T")


@dataclass(frozen=True)
class Rank:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    launched: bool = False  #: started by torchrun (a process group exists)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, items: Sequence[T]) -> list[T]:
        """This rank's deterministic share: every world-th item starting at its rank."""
        return list(items[self.rank::self.world])

    def device(self, name: str) -> torch.device:
        """``auto`` under torchrun with GPUs -> this process's own GPU (cuda:LOCAL_RANK)."""
        if name == "auto" and self.launched and torch.cuda.is_available():
            return torch.device(f"cuda:{self.local_rank % torch.cuda.device_count()}")
        return pick_device(name)

    def barrier(self) -> None:
        if self.launched:
            torch.distributed.barrier()

    def gather(self, value: T) -> list[T]:
        """Every rank's ``value`` (picklable), in rank order (only this rank's without a process group)."""
        if not self.launched:
            return [value]
        out: list[Any] = [None] * self.world  # all_gather_object fills every slot
        torch.distributed.all_gather_object(out, value)
        return out

    def close(self) -> None:
        if self.launched and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _environment_int(name: str, default: str | None) -> int:
    """A whole number from the environment (torchrun's variables); ``default`` None: it must be set."""
    text = os.environ.get(name, default)
    if text is None:
        raise DmcodecError(f"WORLD_SIZE is set in the environment but {name} is not; start with torchrun, or "
                           "unset WORLD_SIZE to run one process")
    try:
        return int(text)
    except ValueError:
        raise DmcodecError(f"{name}={text!r} in the environment is not a whole number; it is set by torchrun "
                           "(unset it to run one process)") from None


def check_shard(num_shards: int, shard_index: int) -> None:
    """Raise DmcodecError unless ``num_shards >= 1`` and ``0 <= shard_index < num_shards``."""
    if not num_shards >= 1:
        raise DmcodecError(f"--num-shards must be at least 1 (the number of shares), got {num_shards}")
    if not 0 <= shard_index < num_shards:
        raise DmcodecError(f"--shard-index must be in 0..{num_shards - 1} (one of the {num_shards} shares), "
                           f"got {shard_index}")


def from_environment(num_shards: int = 1, shard_index: int = 0, timeout_hours: float = 48.0) -> Rank:
    """The rank of this process: torchrun's if launched by it, else the manual shard."""
    world = _environment_int("WORLD_SIZE", "1")
    if world > 1:
        rank, local_rank = _environment_int("RANK", None), _environment_int("LOCAL_RANK", "0")
        if not 0 <= rank < world:
            raise DmcodecError(f"RANK={rank} in the environment is not in 0..{world - 1} (WORLD_SIZE={world})")
        if not torch.distributed.is_initialized():
            # the barrier waits for the slowest rank's whole share: a long timeout
            torch.distributed.init_process_group("gloo", timeout=datetime.timedelta(hours=timeout_hours))
        return Rank(rank, world, local_rank, True)
    check_shard(num_shards, shard_index)
    return Rank(shard_index, num_shards, 0, False)
