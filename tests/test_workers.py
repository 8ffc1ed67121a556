"""The grid on local worker processes: the same scores as one process, and a worker killed mid-run costs a retry,
never a duplicated or partial file."""
import json
import os
import signal

import pytest

from dilmbench.config import build_config
from dilmbench.errors import DilmbenchError
from dilmbench.runner import Runner, read_result


def _cfg(glue_dir, tiny_bert, **kw):
    base = {"tasks": ["sst2"], "methods": ["random", "herding"], "dpc": [2], "sets": 2, "inits": 2,
            "encoder": tiny_bert, "pooling": "mean", "data_source": str(glue_dir), "dev_size": 10,
            "evaluator_options": {"finetune": {"learners": [tiny_bert], "steps": 3}}}
    base.update(kw)
    return build_config("quick", overrides=base)


def _scores(out):
    return {str(p.relative_to(out)): read_result(p)["score"] for p in sorted((out / "runs").rglob("*.json"))}


def test_workers_give_the_same_results_as_one_process(glue_dir, tiny_bert, tmp_path):
    one = tmp_path / "one"
    Runner(_cfg(glue_dir, tiny_bert), one, progress=False, cache_dir=tmp_path / "c1").run()
    two = tmp_path / "two"
    counts = Runner(_cfg(glue_dir, tiny_bert), two, progress=False, cache_dir=tmp_path / "c2", workers=2,
                    threads_per_worker=1).run()
    assert counts["done"] == 8
    assert _scores(one) == _scores(two) and len(_scores(one)) == 8
    rec = read_result(sorted((two / "runs").rglob("*.json"))[0])
    assert rec["execution"] == {"executor": "local-workers", "workers": 2, "threads_per_worker": 1, "retries": 0}
    assert not list(two.rglob("*.tmp*"))


def test_the_next_methods_runs_queue_behind_the_last_ones_without_waiting_for_them(glue_dir, tiny_bert, tmp_path,
                                                                                    monkeypatch):
    """No barrier between methods: a method whose last round has fewer runs than workers would leave a worker idle
    until its runs were done. Every run is handed out before the driver first waits for one."""
    import dilmbench.workers as workers

    events = []

    class Logged(workers.LocalWorkers):
        def submit(self, job, meta, tries=0):
            events.append("submit")
            return super().submit(job, meta, tries)

        def harvest(self, block=False):
            if block:
                events.append("wait")
            return super().harvest(block)

    monkeypatch.setattr(workers, "LocalWorkers", Logged)
    counts = Runner(_cfg(glue_dir, tiny_bert, inits=1), tmp_path / "out", progress=False, cache_dir=tmp_path / "c",
                    workers=2, threads_per_worker=1).run()
    assert counts["done"] == 4 and len(_scores(tmp_path / "out")) == 4
    assert events.count("submit") == 4 and "wait" not in events[:events.index("submit") + 4], events


def test_a_killed_worker_is_retried_and_nothing_is_written_twice_or_half(glue_dir, tiny_bert, tmp_path):
    import multiprocessing
    import threading
    import time

    killed = []

    def kill_first_worker():  # SIGKILL a worker as soon as one is busy (runs are pending then)
        t0 = time.time()
        while time.time() - t0 < 120 and not killed:
            kids = multiprocessing.active_children()
            if kids:
                time.sleep(0.5)
                os.kill(kids[0].pid, signal.SIGKILL)
                killed.append(kids[0].pid)
            time.sleep(0.05)

    threading.Thread(target=kill_first_worker, daemon=True).start()
    out = tmp_path / "out"
    counts = Runner(_cfg(glue_dir, tiny_bert, methods=["random"]), out, progress=False, workers=2,
                    threads_per_worker=1).run()
    files = sorted((out / "runs").rglob("*.json"))
    assert killed and counts["done"] == 4 and len(files) == 4
    recs = [json.loads(p.read_text()) for p in files]  # every file complete JSON, none twice
    assert sum(r["execution"]["retries"] for r in recs) >= 1
    assert not list(out.rglob("*.tmp*"))
    # the same scores as an undisturbed sequential run
    ref = tmp_path / "ref"
    Runner(_cfg(glue_dir, tiny_bert, methods=["random"]), ref, progress=False).run()
    assert _scores(out) == _scores(ref)


def test_bad_worker_counts_are_refused(glue_dir, tiny_bert, tmp_path):
    with pytest.raises(DilmbenchError, match="--workers must be a whole number of at least 1"):
        Runner(_cfg(glue_dir, tiny_bert), tmp_path / "o", workers=0)


def test_ray_gives_the_same_results_and_retries_a_crashed_worker(glue_dir, tiny_bert, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    import dilmbench.workers as w

    ref = tmp_path / "ref"
    Runner(_cfg(glue_dir, tiny_bert, methods=["random"]), ref, progress=False).run()
    marker = str(tmp_path / "crashed-once")

    def crash_once(job, threads, plugins):  # (shipped to the Ray worker by value)
        try:  # atomic: of two workers that start at once, only the one that creates the marker crashes
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return w.ray_job(job, threads, plugins)
        os._exit(1)

    monkeypatch.setattr(w.RayWorkers, "job_function", staticmethod(crash_once))
    out = tmp_path / "ray"
    counts = Runner(_cfg(glue_dir, tiny_bert, methods=["random"]), out, progress=False, executor="ray", workers=2,
                    threads_per_worker=1).run()
    assert counts["done"] == 4 and os.path.exists(marker)
    recs = [read_result(p) for p in sorted((out / "runs").rglob("*.json"))]
    assert all(r["execution"]["executor"] == "ray" for r in recs)
    assert sum(r["execution"]["retries"] for r in recs) == 1
    assert _scores(out) == _scores(ref)
