"""Sweeps on Ray: each unfinished run is a Ray task that trains into the shared run folders with `train_run`.

Ray is imported here only, when a sweep asks for it, so the lab works without it. The driver (`python -m lab sweep
--executor ray`) validates the sweep files and loads the datasets first, as the local executor does; it ships each
dataset once through Ray's object store, submits the unfinished runs with the CPUs and GPUs of their sweep's
[resources], logs each run as it finishes and leaves the tables to the caller.
"""

import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lab.config import RunConfig, run_id
from lab.data import Dataset
from lab.errors import LabError
from lab.runner import done_line, pending_runs, train_run
from lab.sweep import Resources, Sweep, SweepRun, check_resources
from lab.tracking import Tracking

INSTALL_HINT = "pip install '.[ray]'"
MARKER_PREFIX = ".ray-driver-"  # a file the driver leaves in the runs dir: a task that cannot see it is on a node
#                                 that does not share the driver's run folders


class ExecutorError(LabError, RuntimeError):
    """The Ray executor cannot run the sweep: Ray missing, no cluster at the address, settings it cannot honour."""


def import_ray():
    """The ray module, or ExecutorError saying how to install it."""
    # Ray folds log lines that differ only in their numbers into one "[repeated 3x]": the epoch lines of different
    # runs would vanish into each other. Its setting is read when ray is first imported.
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    try:
        import ray
    except ImportError as error:
        raise ExecutorError(f"--executor ray needs Ray, which is not installed here ({error}). "
                            f"Install it with: {INSTALL_HINT} (on every node of a cluster)") from None
    return ray


def resources_with(resources: Resources, cpus: int | None = None, gpus: float | None = None) -> Resources:
    """A sweep's resources with the command line's --cpus-per-run / --gpus-per-run in place of the file's."""
    try:
        return check_resources(resources.cpus if cpus is None else cpus, resources.gpus if gpus is None else gpus)
    except ValueError as error:
        raise ExecutorError(f"--{str(error).replace(':', '-per-run:', 1)}") from None


def node_name() -> str:
    """This machine as a person finds it in `ray status`: host name and IP address."""
    try:
        import ray
        ip = ray.util.get_node_ip_address()
    except Exception:  # outside a Ray worker: the host name says enough
        ip = None
    host = socket.gethostname()
    return f"{host} ({ip})" if ip else host


def train_task(cfg: RunConfig, expected_id: str, runs_dir: str, marker: str, dataset: Dataset, device: str | None,
               precision: str, cpus: int, gpus: float, track: tuple[str, ...] = (),
               group: str = "") -> tuple[dict, str]:
    """Train one run on a Ray worker into runs_dir/<run id>/ with `cpus` torch threads; (metrics, node name).

    track: trackers the task copies its run into itself, grouped under the sweep's name (lab/tracking.py).
    """
    node = node_name()
    if run_id(cfg) != expected_id:  # a different lab version on this node would write another run's folder
        raise RuntimeError(f"node {node}: its lab names this run {run_id(cfg)}, the driver's {expected_id}; "
                           "install the same version of the lab on every node")
    folder = Path(runs_dir)
    if not folder.is_dir() or not (folder / marker).is_file() or not os.access(folder, os.W_OK):
        why = ("no such folder here" if not folder.is_dir() else "a folder of that name, but not the driver's"
               if not (folder / marker).is_file() else "not writable here")
        raise RuntimeError(f"node {node} cannot reach the driver's run folders at {folder} ({why}): put --runs-dir "
                           "on a filesystem every node mounts at the same path (NFS, a bucket mount)")
    torch.set_num_threads(cpus)  # the thread count changes the last digits of a CPU run: make it the run's cpus
    device = torch.device(device or ("cuda" if gpus > 0 else "cpu"))  # Ray shows a task only the GPUs it was given
    # epoch lines reach the driver's terminal under Ray's "(train <run id> pid=...)" prefix; no progress bars
    tracking = Tracking(track, folder, group) if track else None
    metrics = train_run(cfg, folder, dataset, device, progress=False, precision=precision, tracking=tracking)
    if tracking:
        print(f"{run_id(cfg)} {tracking.summary()}")
    return metrics, node


@dataclass(frozen=True)
class Job:
    sweep: Sweep
    run: SweepRun
    resources: Resources


def plan(sweeps: list[Sweep], runs_dir: Path, cpus: int | None, gpus: float | None,
         log: Callable[[str], None]) -> list[Job]:
    """The unfinished runs of every sweep, each once (a run shared by two sweeps trains for the first)."""
    jobs: dict[str, Job] = {}
    for sweep in sweeps:
        resources = resources_with(sweep.resources, cpus, gpus)
        runs = sweep.unique_runs()
        todo = [r for r in pending_runs(sweep, runs_dir) if r.run_id not in jobs]
        log(f"sweep {sweep.name} ({sweep.profile}): {len(runs)} runs, {len(runs) - len(todo)} already done, "
            f"{len(todo)} to train on Ray ({resources.cpus} cpus, {resources.gpus:g} gpus per run) -> {runs_dir}")
        jobs |= {r.run_id: Job(sweep, r, resources) for r in todo}
    return list(jobs.values())


def check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fail fast when nothing answers at a HOST:PORT or ray://HOST:PORT address (Ray itself retries for minutes)."""
    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not port.isdigit():  # "auto" and the like: Ray finds the cluster and fails quickly by itself
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as error:
        raise ExecutorError(f"--address {address}: nothing answers at {host}:{port} ({error}); is `ray start --head` "
                            "running there, and the port open from here?") from None


def start_ray(ray, address: str | None) -> bool:
    """Join the cluster at address, or start a local instance on this machine's cores; True when started here."""
    if address:
        check_reachable(address)
    if ray.is_initialized():  # a caller (a test, a notebook) set Ray up already: use it as it is
        return False
    if not sys.stdout.isatty():
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")  # no colour codes in the prefixes of logs written to files
    quiet = {"logging_level": logging.WARNING, "log_to_driver": True}  # Ray's own INFO lines off; tasks' lines on
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            # "local": a fresh instance even where `ray start` left a cluster (ray.init() alone would join that)
            ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise ExecutorError(f"cannot start or join {where}: {str(error).rstrip('.')}. Start a cluster with "
                            "`ray start --head`, or leave out --address to run on this machine") from None
    return True


def check_fits(ray, jobs: list[Job], local: bool, log: Callable[[str], None]) -> None:
    """Fail (local instance) or warn (a cluster may add nodes) when no node has the CPUs and GPUs a run asks for."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    for res in sorted({j.resources for j in jobs}, key=lambda r: (r.cpus, r.gpus)):
        if any(n.get("CPU", 0) >= res.cpus and n.get("GPU", 0) >= res.gpus for n in nodes):
            continue
        have = ", ".join(f"{n.get('CPU', 0):g} cpus/{n.get('GPU', 0):g} gpus" for n in nodes) or "no nodes"
        message = (f"runs ask for {res.cpus} cpus and {res.gpus:g} gpus each, but no Ray node has that ({have}); "
                   "lower [resources] or --cpus-per-run / --gpus-per-run")
        if local:
            raise ExecutorError(message)
        log(f"warning: {message}; they wait until such a node joins (Ctrl-C stops)")


def run_on_ray(sweeps: list[Sweep], runs_dir: Path, datasets: dict[str, Dataset], address: str | None = None,
               device: str | None = None, precision: str = "auto", cpus: int | None = None, gpus: float | None = None,
               log: Callable[[str], None] = print, tracks: dict[str, tuple[str, ...]] | None = None) -> list[str]:
    """Train the sweeps' unfinished runs as Ray tasks; returns the failed runs ("id: error"), [] when all trained.

    tracks: the trackers of each sweep by name (default: none); each task logs its own run.
    """
    runs_dir = Path(runs_dir).resolve()  # workers see the same absolute path, whatever their working directory
    jobs = plan(sweeps, runs_dir, cpus, gpus, log)
    if device and torch.device(device).type == "cuda" and any(j.resources.gpus == 0 for j in jobs):
        raise ExecutorError(f"--device {device}: Ray hides the GPUs from runs that ask for none; "
                            "set gpus in [resources] or --gpus-per-run")
    if not jobs:
        return []  # nothing to train: no need to start Ray
    ray = import_ray()
    started_here = start_ray(ray, address)
    marker = runs_dir / f"{MARKER_PREFIX}{uuid.uuid4().hex}"
    try:
        check_fits(ray, jobs, local=started_here and not address, log=log)
        runs_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{node_name()}\n")
        return _submit_and_wait(ray, jobs, runs_dir, marker.name, datasets, device, precision, log, tracks or {})
    finally:
        marker.unlink(missing_ok=True)
        if started_here:
            ray.shutdown()


def _submit_and_wait(ray, jobs: list[Job], runs_dir: Path, marker: str, datasets: dict[str, Dataset],
                     device: str | None, precision: str, log: Callable[[str], None],
                     tracks: dict[str, tuple[str, ...]]) -> list[str]:
    """Submit every job, then log each as it finishes; Ctrl-C cancels what is still queued or running."""
    dataset_refs = {name: ray.put(datasets[name]) for name in sorted({j.run.config.data.dataset for j in jobs})}
    # no retries of a run whose code raised (it would raise again); a lost worker (killed, node gone) is retried
    remote = ray.remote(max_retries=2, retry_exceptions=False)(train_task)
    pending: dict[Any, Job] = {}
    for job in jobs:
        ref = remote.options(num_cpus=job.resources.cpus, num_gpus=job.resources.gpus,
                             name=f"train {job.run.run_id}").remote(
            job.run.config, job.run.run_id, str(runs_dir), marker, dataset_refs[job.run.config.data.dataset],
            device, precision, job.resources.cpus, job.resources.gpus, tracks.get(job.sweep.name, ()), job.sweep.name)
        pending[ref] = job
    totals = {s: sum(j.sweep.name == s for j in jobs) for s in {j.sweep.name for j in jobs}}
    counts = dict.fromkeys(totals, 0)
    log(f"submitted {len(jobs)} runs to Ray ({ray.cluster_resources().get('CPU', 0):g} cpus, "
        f"{ray.cluster_resources().get('GPU', 0):g} gpus in the cluster)")
    failed: list[str] = []
    started = time.perf_counter()
    try:
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ref)
            done = len(jobs) - len(pending)
            counts[job.sweep.name] += 1
            left = (time.perf_counter() - started) / done * len(pending) / 60
            head = (f"[{job.sweep.name} {counts[job.sweep.name]}/{totals[job.sweep.name]}, about {left:.1f} min left] "
                    f"{job.run.title}")
            try:
                metrics, node = ray.get(ref)
            except ray.exceptions.RayError as error:
                cause = getattr(error, "cause", None) or error  # a task's own exception, else Ray's (worker lost...)
                failed.append(f"{job.run.run_id}: {type(cause).__name__}: {cause}")
                log(f"{head}  FAILED: {type(cause).__name__}: {cause}")
                continue
            log(f"{head}  {done_line(job.sweep.task, metrics)}  on {node}")
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)  # no metrics.json yet: a rerun resumes it from its last epoch checkpoint
        raise
    log(f"Ray: trained {len(jobs) - len(failed)} of {len(jobs)} runs in {time.perf_counter() - started:.0f} s"
        + (f"; {len(failed)} failed" if failed else ""))
    return failed
