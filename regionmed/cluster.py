"""The Dask cluster the stages hand their per-image work to (docs/scaling.md).

A stage opens a :func:`dask_client` for the length of its work and maps its shards or chunks over it
with :func:`run_tasks`; ``dvc repro`` stays the driver (one stage at a time, its outputs written
whole by the stage's process), Dask only places the tasks. ``cluster.address`` picks the cluster:
none starts a ``LocalCluster`` of ``cluster.workers`` (one worker: inside the stage's process, no
pickling, today's single-process behaviour), an address joins a running scheduler (``dask scheduler``
on a head node, workers from dask-jobqueue on SLURM or from the Dask Helm chart on Kubernetes).

Results never depend on the cluster: each task is a pure function of its arguments (an image's bytes
depend on the seed and its index only) and results are gathered in submission order. A worker process
runs BLAS/OpenMP (torch) with ``threads_per_worker`` threads; the one in-process worker keeps the
stage's own, so the default run computes exactly what it computed before the cluster existed. (Torch
on CPU sums in an order that depends on its thread count: embeddings are bitwise equal across clusters
when ``threads_per_worker`` equals the stage's thread count, equal to rounding otherwise.)

A worker that dies mid-task has its task re-run elsewhere by the scheduler (a task writes its one
output file whole, under a temporary name, so a re-run replaces nothing half-written); after
``allowed_failures`` deaths the stage stops.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from regionmed.errors import BadInput, StageBroke
from regionmed.params_pipeline import ClusterParams
from regionmed.progress import progress as show_progress


class ClusterError(StageBroke):
    """The cluster could not finish a task (its workers kept dying): the stage broke, nothing was
    written (exit status 3: regionmed/errors.py)."""


@contextmanager
def dask_client(cluster: ClusterParams) -> Iterator[Any]:
    """A ``distributed.Client`` on the cluster ``cluster`` names, closed (and a local cluster shut down)
    on exit. An address that does not answer within ``connect_timeout_s`` is bad input naming it."""
    import dask
    from distributed import Client, LocalCluster

    settings = {
        "distributed.scheduler.allowed-failures": cluster.allowed_failures,
        "distributed.worker.daemon": False,  # a task may start its own processes (DataLoader workers)
        "distributed.admin.system-monitor.gil.enabled": False,
        # Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in its workers; a set trim threshold turns off
        # glibc's dynamic mmap threshold, so every array of 128 KiB or more is mmapped and unmapped:
        # the phantom build ran 3.5x slower per image in a worker process (numpy on 128 px: 20x)
        "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    }
    logging.getLogger("distributed").setLevel(logging.WARNING)  # its INFO lines name every task and worker
    with dask.config.set(settings):
        if cluster.address:
            try:
                client = Client(cluster.address, timeout=f"{cluster.connect_timeout_s}s")
            except (OSError, TimeoutError) as exc:
                raise BadInput(
                    f"cluster.address {cluster.address!r}: no Dask scheduler answered within "
                    f"{cluster.connect_timeout_s:g} s (cluster.connect_timeout_s): {exc}. Start one "
                    "(`dask scheduler`) or set cluster.address: null for a local cluster."
                ) from None
            with client:
                try:  # a scheduler without workers would take the tasks and never run them
                    client.wait_for_workers(1, timeout=cluster.connect_timeout_s)
                except TimeoutError:
                    raise BadInput(
                        f"cluster.address {cluster.address!r}: the scheduler answered but has no workers "
                        f"after {cluster.connect_timeout_s:g} s (cluster.connect_timeout_s): start some "
                        f"(`dask worker {cluster.address}`)."
                    ) from None
                yield client
            return
        local = LocalCluster(
            n_workers=cluster.workers,
            threads_per_worker=cluster.threads_per_worker,
            processes=cluster.workers > 1,
            memory_limit=cluster.memory_limit if cluster.workers > 1 else None,
            # loopback only: Dask's HTTP endpoints (health, metrics) would otherwise bind the host's address
            **({"host": "127.0.0.1"} if cluster.workers > 1 else {}),
            dashboard_address="127.0.0.1:0",
            worker_dashboard_address="127.0.0.1:0",
            silence_logs=logging.WARNING,
            **({"env": _thread_env(cluster.threads_per_worker)} if cluster.workers > 1 else {}),
        )
        with local, Client(local) as client:
            yield client


def _thread_env(threads: int) -> dict[str, str]:
    """Worker processes' thread settings: as many BLAS/OpenMP threads as Dask gives them task threads."""
    names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    return {name: str(threads) for name in names}


def run_tasks(
    client,
    fn: Callable[..., Any],
    args: Sequence[tuple],
    *,
    name: str,
    shared: Sequence[Any] = (),
    progress: bool | None = None,
    unit: str = "task",
) -> list[Any]:
    """``[fn(*shared, *a) for a in args]`` on the cluster, in the order of ``args``.

    ``shared`` objects (a source, a context) are sent to every worker once, not once per task. A task
    that raises re-raises here with its own exception; a task whose workers died ``allowed_failures``
    times is a :class:`ClusterError` naming it.
    """
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    if not args:
        return []
    scattered = [client.scatter(obj, broadcast=True, hash=False) for obj in shared]
    run = uuid.uuid4().hex[:12]  # keys of their own: a shared scheduler may hold another run's of this name
    futures = [client.submit(fn, *scattered, *a, key=f"{name}-{i:06d}-{run}") for i, a in enumerate(args)]
    position = {f.key: i for i, f in enumerate(futures)}
    results: list[Any] = [None] * len(futures)
    bar = {"total": len(futures), "desc": name, "unit": unit, "enabled": progress is not False}
    try:
        # Each result is fetched as it completes and released on the cluster: a worker that dies later
        # takes no finished result with it, so only the tasks it was running are run again.
        for future, result in show_progress(as_completed(futures, with_results=True), **bar):
            results[position[future.key]] = result
            future.release()
        return results
    except KilledWorker as exc:
        raise ClusterError(
            f"{name}: the workers running task {exc.task!r} died each time it was tried "
            "(cluster.allowed_failures); nothing of this stage was written. The workers' logs say why "
            "(out of memory is the usual cause: cluster.memory_limit)."
        ) from None
    finally:
        client.cancel(futures)
