"""Evaluation runs on local worker processes (``dilmbench run --workers N``).

The plan stays the runner's: the driver makes every set (a method's preparation happens once, in the driver) and
writes every result file (atomically); a worker only evaluates: it gets (evaluator, task data, set, learner, seed)
and returns the metrics. Its seed comes from the run's identity, so the scores do not depend on which worker ran
what, or in which order. A worker that dies takes its pool with it: every run that had not come back is submitted
again to a fresh pool and its result records how often it was retried; nothing is written twice or half.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context

from .errors import DilmbenchError

_STATE: dict = {}


def _init(threads: int, plugins: tuple[str, ...]) -> None:
    import torch

    torch.set_num_threads(threads)
    from .registry import load_plugin

    for p in plugins:
        load_plugin(p)


def evaluate_job(job: dict) -> tuple[dict | list[dict], float]:
    """One run in a worker (or, with "runs", several at once): the evaluator and the task's data are built once per
    process and kept."""
    from .api import EvalContext
    from .config import build_evaluator
    from .tasks import TASKS, load_task_data

    ekey = repr(job["evaluator"])
    if ekey not in _STATE:
        name, preset, options = job["evaluator"]
        _STATE[ekey] = build_evaluator({"evaluator": name, "preset": preset, "evaluator_options": {name: options}})
    dkey = repr((job["task"], job["data"]))
    if dkey not in _STATE:
        source, dev_size, dev_seed = job["data"]
        _STATE[dkey] = load_task_data(TASKS[job["task"]], source, dev_size, dev_seed)
    ctx = EvalContext(data=_STATE[dkey], device=job["device"], cache_dir=job["cache_dir"], progress=False,
                      split=job["split"])
    t0 = time.perf_counter()
    if "runs" in job:  # several runs at once (--batch-runs): a list of results
        res = _STATE[ekey].evaluate_many(ctx, [(r["textset"], r["learner"], r["seed"]) for r in job["runs"]])
    else:
        res = _STATE[ekey].evaluate(ctx, job["textset"], job["learner"], job["seed"])
    return res, time.perf_counter() - t0


class LocalWorkers:
    """N spawned worker processes, ``threads`` torch threads each."""

    executor = "local-workers"

    def __init__(self, n: int, threads: int | None = None, plugins: tuple[str, ...] = (), max_retries: int = 2):
        if n < 1:
            raise DilmbenchError(f"--workers must be at least 1, got {n}")
        self.n = n
        self.threads = threads or max(1, (os.cpu_count() or 1) // n)
        self.plugins, self.max_retries = tuple(plugins), max_retries
        self.pending: dict = {}
        self._pool = self._new_pool()

    def _new_pool(self):
        return ProcessPoolExecutor(max_workers=self.n, mp_context=get_context("spawn"), initializer=_init,
                                   initargs=(self.threads, self.plugins))

    def submit(self, job: dict, meta, tries: int = 0) -> None:
        self.pending[self._pool.submit(evaluate_job, job)] = (job, meta, tries)

    def harvest(self, block: bool = False) -> list:
        """Finished runs as (meta, result, seconds, retries); with block, waits until at least one is back (or none
        is pending). A run lost with a dead worker is resubmitted to a fresh pool."""
        done = [f for f in self.pending if f.done()]
        if not done and block and self.pending:
            done = list(wait(list(self.pending), return_when=FIRST_COMPLETED).done)
        out, lost = [], []
        for f in done:
            job, meta, tries = self.pending.pop(f)
            try:
                res, seconds = f.result()
            except BrokenProcessPool:
                lost.append((job, meta, tries))
                continue
            out.append((meta, res, seconds, tries))
        if lost:
            # the pool is broken: every run still pending is lost with it (or finished first); wait for all to settle
            rest = list(self.pending)
            wait(rest)
            for f in rest:
                job, meta, tries = self.pending.pop(f)
                try:
                    res, seconds = f.result()
                    out.append((meta, res, seconds, tries))
                except BrokenProcessPool:
                    lost.append((job, meta, tries))
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            for job, meta, tries in lost:
                if tries + 1 > self.max_retries:
                    raise DilmbenchError(f"a run was lost with its worker {tries + 1} times; giving up "
                                         f"({', '.join(map(str, meta)) if isinstance(meta, list) else meta})")
                self.submit(job, meta, tries + 1)
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def ray_job(job: dict, threads: int, plugins: tuple[str, ...]) -> tuple[dict, float]:
    """One run as a Ray task: the worker process is set up once (threads, plugins), then as a local worker."""
    if "init" not in _STATE:
        _init(threads, plugins)
        _STATE["init"] = True
    return evaluate_job(job)


class RayWorkers:
    """Runs as Ray tasks on an existing cluster (``address``, e.g. "auto") or on a local one started for the run;
    each task declares its resources (``threads`` CPUs, or one GPU per task where the device is CUDA)."""

    executor = "ray"
    job_function = staticmethod(ray_job)
    ENV = ("HF_HUB_OFFLINE", "HF_HOME", "HF_HUB_CACHE", "DILMBENCH_CACHE", "DILMBENCH_DATA_DIR",
           "TOKENIZERS_PARALLELISM")

    def __init__(self, address: str | None, threads: int | None = None, plugins: tuple[str, ...] = (),
                 max_retries: int = 2, num_cpus: int | None = None, gpu: bool = False):
        try:
            import ray
        except ImportError as exc:
            raise DilmbenchError("--executor ray needs ray: pip install -e .[ray]") from exc
        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            env = {k: os.environ[k] for k in self.ENV if k in os.environ}
            ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False,
                     log_to_driver=False, runtime_env={"env_vars": env} if env else None)
        self.threads = threads or 1
        self.n = int(ray.cluster_resources().get("CPU", 1))
        self.plugins, self.max_retries = tuple(plugins), max_retries
        opts = {"num_cpus": self.threads, "max_retries": 0}
        if gpu:
            opts["num_gpus"] = 1
        self._remote = ray.remote(**opts)(self.job_function)
        self.pending: dict = {}

    def submit(self, job: dict, meta, tries: int = 0) -> None:
        self.pending[self._remote.remote(job, self.threads, self.plugins)] = (job, meta, tries)

    def harvest(self, block: bool = False) -> list:
        if not self.pending:
            return []
        ready, _ = self.ray.wait(list(self.pending), num_returns=len(self.pending), timeout=0)
        if not ready and block:
            ready, _ = self.ray.wait(list(self.pending), num_returns=1)
        out = []
        for ref in ready:
            job, meta, tries = self.pending.pop(ref)
            try:
                res, seconds = self.ray.get(ref)
            except (self.ray.exceptions.WorkerCrashedError, self.ray.exceptions.NodeDiedError,
                    self.ray.exceptions.LocalRayletDiedError) as exc:
                if tries + 1 > self.max_retries:
                    raise DilmbenchError(f"a run was lost with its Ray worker {tries + 1} times; giving up "
                                         f"({type(exc).__name__})") from exc
                self.submit(job, meta, tries + 1)
                continue
            except self.ray.exceptions.RayTaskError as exc:  # the evaluation itself failed: as in one process
                raise exc.as_instanceof_cause() from None
            out.append((meta, res, seconds, tries))
        return out

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()
