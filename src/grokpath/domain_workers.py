"""The domains' passes of one training step, side by side in forked worker processes.

Each full-batch step of the mini pretraining runs one forward and backward pass per domain.
A small model's kernels are too small for torch to split over cores, but the passes are
independent: forked workers each run their share of the domains on one torch thread, on the
model's own parameters (moved to shared memory before the fork, so every optimizer step is
seen at once), and write each domain's gradients to a shared buffer of its own. The parent
sums them in the domains' order (:func:`grokpath.pretrain.apply_gradients`), so the weights
are bit-identical to a one-process run at any worker count. Processes rather than threads:
transformers' modelling code holds the GIL between kernels, and two threads reached 1.5-1.6x
where two processes reach 1.9x (bench/README.md).

Needs the ``fork`` start method (Linux; not Windows): :func:`can_fork` says whether it is there.
"""

from __future__ import annotations

import itertools
import multiprocessing
import traceback

import torch


def _receive(conn):
    """The parent's next message; None when it has closed the pipe or died (a killed run)."""
    try:
        return conn.recv()
    except EOFError:
        return None


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def balanced_shares(costs: list[float], workers: int) -> list[list[int]]:
    """Domain indices per worker, the largest load as small as can be.

    Every assignment is tried when there are at most 100,000 (5 domains on 2 workers: 32);
    otherwise the dearest domain goes first to the least loaded worker (LPT). Ties keep the
    first assignment found, so the shares are the same on every run. Workers left without a
    domain are dropped.

    >>> balanced_shares([3, 6, 3, 3, 3], 2)
    [[0, 1], [2, 3, 4]]
    """
    n, workers = len(costs), max(1, min(workers, len(costs)))
    if workers**n <= 100_000:
        best, best_load = None, None
        for owner in itertools.product(range(workers), repeat=n):
            loads = [0.0] * workers
            for d, w in enumerate(owner):
                loads[w] += costs[d]
            if best_load is None or max(loads) < best_load:
                best, best_load = owner, max(loads)
    else:
        loads, best = [0.0] * workers, [0] * n
        for d in sorted(range(n), key=lambda d: (-costs[d], d)):
            w = min(range(workers), key=lambda w: (loads[w], w))
            best[d] = w
            loads[w] += costs[d]
    shares = [[d for d in range(n) if best[d] == w] for w in range(workers)]
    return [share for share in shares if share]


class DomainWorkers:
    """Worker processes that return each domain's loss, aux loss and gradients for one step.

    ``pass_fn(d, index)`` runs domain ``d``'s pass in a worker (``index``: the rows of this
    step, None for all) and returns ``(loss, aux, grads)`` with ``grads`` one tensor or None
    per trainable parameter of ``model``. ``costs`` (e.g. tokens per domain) balance the
    shares. Use as a context manager; the workers stop on exit.
    """

    def __init__(self, model: torch.nn.Module, costs: list[float], workers: int, pass_fn):
        model.share_memory()  # before the fork: the workers read the weights the parent's optimizer updates
        params = [p for p in model.parameters() if p.requires_grad]
        self.n = len(costs)
        self.grads = [[torch.zeros_like(p).share_memory_() for p in params] for _ in range(self.n)]
        self.used = torch.zeros(self.n, len(params), dtype=torch.bool).share_memory_()
        self.stats = torch.zeros(self.n, 2, dtype=torch.float64).share_memory_()  # loss, aux (Python floats, exactly)
        context = multiprocessing.get_context("fork")
        self.shares = balanced_shares(costs, workers)
        self.conns, self.procs = [], []
        for share in self.shares:
            parent, child = context.Pipe()
            proc = context.Process(target=self._serve, args=(child, [*self.conns, parent], share, pass_fn), daemon=True)
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)

    def _serve(self, conn, parent_ends: list, share: list[int], pass_fn) -> None:
        for end in parent_ends:  # inherited by the fork: closed here, so the parent's death reads as EOF
            end.close()
        torch.set_num_threads(1)
        while (indices := _receive(conn)) is not None:
            try:
                for d in share:
                    loss, aux, grads = pass_fn(d, indices[d])
                    self.stats[d, 0], self.stats[d, 1] = loss, aux
                    for i, grad in enumerate(grads):
                        self.used[d, i] = grad is not None
                        if grad is not None:
                            self.grads[d][i].copy_(grad)
                conn.send(None)
            except Exception:  # the parent raises it, naming the worker's traceback
                conn.send(traceback.format_exc())

    def step(self, indices: list[torch.Tensor | None]) -> list[dict]:
        """Every domain's ``{"loss", "aux", "grads"}`` of this step, in the domains' order."""
        for conn in self.conns:
            conn.send(indices)
        errors = []
        for conn, proc in zip(self.conns, self.procs):
            try:
                error = conn.recv()
            except EOFError:
                error = f"domain worker {proc.pid} died (exit code {proc.exitcode})"
            if error is not None:
                errors.append(error)
        if errors:
            raise RuntimeError("a domain worker failed:\n" + "\n".join(errors))
        return [
            {
                "loss": float(self.stats[d, 0]),
                "aux": float(self.stats[d, 1]),
                "grads": [g if self.used[d, i] else None for i, g in enumerate(self.grads[d])],
            }
            for d in range(self.n)
        ]

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()

    def __enter__(self) -> DomainWorkers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
