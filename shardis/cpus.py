"""How many CPUs this process may really use: the default number of workers.

``os.cpu_count()`` counts the *host's* CPUs. In a container limited to 2 CPUs on a 64-core
host it says 64, and ``shardis up`` would start 64 workers that fight over 2 CPUs' worth of
time (the kernel throttles the whole container once the quota is spent, so every worker
stalls at once). Two things limit a process, and both are read here:

* the **affinity mask** (``os.sched_getaffinity``): the CPUs the scheduler may run it on; it
  reflects ``taskset``, ``docker run --cpuset-cpus`` and Kubernetes' static CPU manager;
* the **CFS bandwidth quota** of its cgroup: ``docker run --cpus 1.5``, Compose's
  ``cpus:``/``deploy.resources.limits.cpus``, a Kubernetes ``limits.cpu``. In cgroup v2 it is
  the file ``cpu.max`` (``"150000 100000"`` or ``"max 100000"``); in cgroup v1 the files
  ``cpu.cfs_quota_us`` (``-1``: none) and ``cpu.cfs_period_us``. A parent cgroup's quota
  limits its children too, so every level from the process's cgroup up to the root counts.

A fractional quota is rounded up (1.5 CPUs -> 2 workers), as the JVM and .NET do: the
processes still get 1.5 CPUs of time together, and none sits idle while another waits.

The parsing functions are pure (text in, number out) and :func:`usable_cpus` takes the
places it reads as parameters, so both are tested with fake cgroup trees.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

#: Where the cgroup file systems are mounted (v2 alone, or v1 controllers side by side with
#: a v2 hierarchy under ``unified/`` in the "hybrid" layout).
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: This process's cgroup in each hierarchy (``proc(7)``: ``hierarchy-ID:controllers:path``).
PROC_CGROUP = Path("/proc/self/cgroup")


def parse_cpu_max(text: str) -> float | None:
    """cgroup v2 ``cpu.max`` (``"QUOTA PERIOD"``, QUOTA ``max`` when unlimited) -> CPUs,
    or None when there is no limit or the text is not understood."""
    words = text.split()
    if not words or words[0] == "max":
        return None
    period = words[1] if len(words) > 1 else "100000"  # the kernel's default period
    return _ratio(words[0], period)


def parse_cfs(quota: str, period: str) -> float | None:
    """cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` -> CPUs, or None (-1: no
    limit)."""
    return _ratio(quota.strip(), period.strip())


def _ratio(quota: str, period: str) -> float | None:
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:
        return None
    if quota_us <= 0 or period_us <= 0:
        return None
    return quota_us / period_us


def cgroup_paths(proc_cgroup: str) -> tuple[str | None, str | None]:
    """From the text of ``/proc/self/cgroup``: this process's cgroup path in the v2 hierarchy
    (the ``0::PATH`` line) and in the v1 hierarchy that holds the ``cpu`` controller."""
    v2 = v1 = None
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        number, controllers, path = parts
        if number == "0" and controllers == "":
            v2 = path
        elif "cpu" in controllers.split(","):
            v1 = path
    return v2, v1


def _levels(mount: Path, path: str | None) -> list[Path]:
    """The cgroup directories whose limits apply: from the process's own up to the mount's
    root. In a container the mount usually *is* the container's cgroup (a cgroup namespace,
    or a private mount) while /proc/self/cgroup may still name a host path that does not
    exist inside it: then only the mount's root counts."""
    own = mount / path.lstrip("/") if path else mount
    if not own.is_dir():
        return [mount]
    levels = [own]
    while levels[-1] != mount and mount in levels[-1].parents:
        levels.append(levels[-1].parent)
    return levels


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def quota_cpus(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The tightest CPU quota over this process's cgroup and its ancestors, in CPUs, or None
    when no level sets one (or there is no cgroup file system, as outside Linux)."""
    text = _read(proc_cgroup)
    if text is None:
        return None
    v2_path, v1_path = cgroup_paths(text)
    limits: list[float | None] = []
    if v2_path is not None:
        for mount in (root, root / "unified"):
            if (mount / "cgroup.controllers").is_file():
                limits += [parse_cpu_max(_read(level / "cpu.max") or "")
                           for level in _levels(mount, v2_path)]
                break
    if v1_path is not None:
        for name in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
            mount = root / name
            if (mount / "cpu.cfs_quota_us").is_file():
                limits += [parse_cfs(_read(level / "cpu.cfs_quota_us") or "",
                                     _read(level / "cpu.cfs_period_us") or "")
                           for level in _levels(mount, v1_path)]
                break
    known = [limit for limit in limits if limit is not None]
    return min(known) if known else None


def _affinity() -> int | None:
    getaffinity: Callable[[int], set[int]] | None = getattr(os, "sched_getaffinity", None)
    return len(getaffinity(0)) if getaffinity else None


def usable_cpus(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP,
                affinity: Callable[[], int | None] = _affinity,
                cpu_count: Callable[[], int | None] = os.cpu_count) -> int:
    """The CPUs this process can use: the smallest of the affinity mask's size, the cgroup
    quota (rounded up) and the machine's count; at least 1."""
    candidates = [n for n in (affinity(), cpu_count()) if n]
    quota = quota_cpus(root, proc_cgroup)
    if quota is not None:
        candidates.append(math.ceil(quota))
    return max(1, min(candidates, default=1))
