"""Failure cases, run under ``mpiexec -n 2 python fail_worker.py CASE``.

raise     rank 1 raises while rank 0 waits in a barrier: the job must abort, showing
          rank 1's error
hang      rank 1 stops taking part (sleeps) while rank 0 all-reduces with a 2 s timeout
collectives  all_reduce with every op, async and non-contiguous, broadcast, gather
die       rank 1 is killed (SIGKILL) while rank 0 all-reduces
mismatch  the ranks build models of different widths: DDP names the parameter
unused    a model with a parameter the loss does not use: without
          find_unused_parameters the next forward names it; with it, the step completes
"""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np

from cnnkit import distributed as dist
from cnnkit import nn
from cnnkit.tensor import Tensor


def main() -> None:
    case = sys.argv[1]
    dist.init_process_group("mpi", timeout=2.0)
    rank = dist.get_rank()
    if case == "raise":
        if rank == 1:
            raise ValueError("boom from the data of rank 1")
        dist.barrier()
    elif case == "hang":
        if rank == 1:
            time.sleep(30)
        else:
            dist.all_reduce(Tensor(np.ones(4)))
    elif case == "collectives":

        def show(name: str, t: Tensor) -> None:
            print(f"rank {rank} {name} {t.numpy().tolist()}", flush=True)

        for op in (dist.ReduceOp.SUM, dist.ReduceOp.AVG, dist.ReduceOp.MAX, dist.ReduceOp.MIN,
                   dist.ReduceOp.PRODUCT):  # fmt: skip
            t = Tensor(np.array([1.0, 2.0]) * (rank + 1))
            dist.all_reduce(t, op=op)
            show(op.name, t)
        t = Tensor(np.arange(6.0).reshape(2, 3).T * (rank + 1))  # not contiguous
        work = dist.all_reduce(t, async_op=True)
        work.wait()
        show("async_noncontig", t)
        t = Tensor(np.full(3, float(rank)))
        dist.broadcast(t, src=1)
        show("broadcast_from_1", t)
        got: list = [None] * dist.get_world_size()
        dist.all_gather_object(got, {"rank": rank})
        print(f"rank {rank} gathered {got}", flush=True)
    elif case == "die":
        if rank == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        dist.all_reduce(Tensor(np.ones(4)))
    elif case == "mismatch":
        from cnnkit.nn.parallel import DistributedDataParallel

        width = 8 if rank == 0 else 9
        net = nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, 2))
        DistributedDataParallel(net)
    elif case == "unused":
        from cnnkit.nn.parallel import DistributedDataParallel

        class TwoHeads(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.body = nn.Linear(3, 4)
                self.spare = nn.Linear(4, 2)  # never used

            def forward(self, x: Tensor) -> Tensor:
                return self.body(x)

        x = Tensor(np.full((2, 3), float(rank + 1), dtype=np.float32))
        for find in (True, False):
            ddp = DistributedDataParallel(TwoHeads(), find_unused_parameters=find)
            ddp(x).sum().backward()
            g = ddp.module.body.weight.grad.numpy()[0, 0]
            print(f"rank {rank} find={find} weight grad {g}", flush=True)
            try:
                ddp(x)
            except RuntimeError as e:
                print(f"rank {rank} error: {e}", flush=True)
            ddp.remove_hooks()
    print(f"rank {rank} finished", flush=True)


if __name__ == "__main__":
    main()
