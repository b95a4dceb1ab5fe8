"""Shared helpers for the benchmarks: quiet offline environment, a local Ray, machine facts."""

from __future__ import annotations

import json
import os
import platform
import resource
import threading
import time
from typing import Any

QUIET_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_AIR_NEW_OUTPUT": "0",
    "RAY_DEDUP_LOGS": "1",
    "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "60",
}


def quiet_environment(wandb_mode: str = "offline") -> None:
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    os.environ["WANDB_MODE"] = wandb_mode
    os.environ.pop("WANDB_API_KEY", None)


def start_ray(num_cpus: int = 2) -> None:
    """A local Ray of our own (stopped by `stop_ray`); never touches other users' Ray."""
    import ray

    from hpo.loopback import loopback_only

    with loopback_only():
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            log_to_driver=False,
            logging_level="ERROR",
            configure_logging=True,
        )


def stop_ray() -> None:
    import ray

    ray.shutdown()


def machine() -> dict[str, Any]:
    import ray
    import torch

    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    return {
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ray": ray.__version__,
        "load_avg_1min": os.getloadavg()[0],
    }


def rss_mib(pid: int | None = None) -> float:
    """Resident memory of a process (default: this one) in MiB, from /proc."""
    with open(f"/proc/{pid or 'self'}/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class RssSampler:
    """Samples this process's RSS every `every` seconds in a thread; keeps the series."""

    def __init__(self, every: float = 0.5) -> None:
        self.every = every
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.perf_counter()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter() - self._t0, rss_mib()))
            self._stop.wait(self.every)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> float:
        return max((m for _, m in self.samples), default=0.0)

    @property
    def peak_ru(self) -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    text = json.dumps(payload, indent=2, default=str)
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    print(text)


def hpo_run_command(
    spec: str, name: str, storage: str, sets: list[str], hpo_path: str | None
) -> tuple[list[str], dict[str, str]]:
    """`hpo run SPEC --quiet --name N --storage S --set ...` as a user runs it, in its own
    process, and its environment; `hpo_path`: another checkout's hpo (before/after a change),
    which Ray's workers inherit from the driver's PYTHONPATH."""
    import sys

    env = dict(os.environ)
    if hpo_path:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [hpo_path, env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "hpo.cli", "run", spec, "--quiet"]
    command += ["--name", name, "--storage", storage]
    for item in sets:
        command += ["--set", item]
    return command, env
