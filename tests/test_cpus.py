"""shardis.cpus: the default worker count follows the CPU limits a container really has (the
affinity mask and the cgroup v1/v2 CPU quota), read from fake cgroup trees here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shardis import cpus


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def v2_tree(root: Path, proc: str = "0::/\n", **cpu_max: str) -> Path:
    """A cgroup v2 mount at ``root`` (``cpu_max`` maps a cgroup path, ``_`` for ``/``, to its
    cpu.max), and a /proc/self/cgroup file; returns the latter."""
    write(root / "cgroup.controllers", "cpuset cpu io memory pids\n")
    for path, text in cpu_max.items():
        write(root / path.replace("_", "/").strip("/") / "cpu.max", text)
    write(root.parent / "proc-cgroup", proc)
    return root.parent / "proc-cgroup"


def v1_tree(root: Path, proc: str, levels: dict[str, tuple[str, str]],
            mount: str = "cpu,cpuacct") -> Path:
    """A cgroup v1 ``cpu`` hierarchy mounted at ``root/mount``: ``levels`` maps a cgroup path
    to its (cfs_quota_us, cfs_period_us)."""
    for path, (quota, period) in levels.items():
        level = root / mount / path.strip("/")
        write(level / "cpu.cfs_quota_us", quota + "\n")
        write(level / "cpu.cfs_period_us", period + "\n")
    write(root.parent / "proc-cgroup", proc)
    return root.parent / "proc-cgroup"


def count(root: Path, proc: Path, affinity: int | None = 64, host: int | None = 64) -> int:
    return cpus.usable_cpus(root, proc, affinity=lambda: affinity, cpu_count=lambda: host)


# --- the parsers ----------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("max 100000\n", None),
    ("200000 100000\n", 2.0),
    ("150000 100000", 1.5),
    ("50000 100000", 0.5),
    ("300000", 3.0),            # period omitted: the kernel's default 100000
    ("", None),
    ("garbage here", None),
    ("0 100000", None),
])
def test_parse_cpu_max(text, expected):
    assert cpus.parse_cpu_max(text) == expected


@pytest.mark.parametrize("quota, period, expected", [
    ("-1\n", "100000\n", None),
    ("400000\n", "100000\n", 4.0),
    ("25000", "50000", 0.5),
    ("", "100000", None),
    ("100000", "0", None),
])
def test_parse_cfs(quota, period, expected):
    assert cpus.parse_cfs(quota, period) == expected


def test_cgroup_paths():
    assert cpus.cgroup_paths("0::/\n") == ("/", None)
    assert cpus.cgroup_paths("0::/system.slice/docker-abc.scope\n") == (
        "/system.slice/docker-abc.scope", None)
    v1 = "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n"
    assert cpus.cgroup_paths(v1) == (None, "/docker/abc")
    hybrid = "3:cpuacct,cpu:/kubepods/pod1/c1\n0::/kubepods/pod1/c1\n"
    assert cpus.cgroup_paths(hybrid) == ("/kubepods/pod1/c1", "/kubepods/pod1/c1")
    assert cpus.cgroup_paths("") == (None, None)
    assert cpus.cgroup_paths("5:cpuset:/x\n") == (None, None)  # cpuset is not cpu


# --- cgroup v2 ------------------------------------------------------------------------------

def test_v2_container_quota(tmp_path):
    # Inside a container (cgroup namespace): "0::/" and the limit at the mount's root.
    root = tmp_path / "cgroup"
    assert count(root, v2_tree(root, _="200000 100000\n")) == 2


def test_v2_fractional_quota_rounds_up(tmp_path):
    root = tmp_path / "cgroup"
    assert count(root, v2_tree(root, _="150000 100000\n")) == 2
    root2 = tmp_path / "b" / "cgroup"
    assert count(root2, v2_tree(root2, _="20000 100000\n")) == 1  # never 0


def test_v2_no_limit(tmp_path):
    root = tmp_path / "cgroup"
    assert count(root, v2_tree(root, _="max 100000\n"), affinity=6, host=8) == 6


def test_v2_parent_limit_applies(tmp_path):
    # A Kubernetes pod's limit sits on the pod's cgroup, the container's own says "max".
    root = tmp_path / "cgroup"
    proc = v2_tree(root, "0::/kubepods/pod1/c1\n",
                   kubepods="max 100000", kubepods_pod1="300000 100000",
                   kubepods_pod1_c1="max 100000")
    assert count(root, proc) == 3


def test_v2_tightest_level_wins(tmp_path):
    root = tmp_path / "cgroup"
    proc = v2_tree(root, "0::/a/b\n", a="100000 100000", a_b="400000 100000")
    assert count(root, proc) == 1


def test_v2_host_path_missing_inside_container(tmp_path):
    # No cgroup namespace: /proc/self/cgroup names the host's path, absent in the mount.
    root = tmp_path / "cgroup"
    proc = v2_tree(root, "0::/system.slice/docker-abc.scope\n", _="300000 100000")
    assert count(root, proc) == 3


def test_v2_hybrid_layout(tmp_path):
    root = tmp_path / "cgroup"
    proc = v2_tree(root / "unified", "0::/\n", _="200000 100000")
    assert count(root, proc) == 2


# --- cgroup v1 ------------------------------------------------------------------------------

def test_v1_container_quota(tmp_path):
    root = tmp_path / "cgroup"
    proc = v1_tree(root, "4:cpu,cpuacct:/\n", {"/": ("300000", "100000")})
    assert count(root, proc) == 3


def test_v1_no_quota(tmp_path):
    root = tmp_path / "cgroup"
    proc = v1_tree(root, "4:cpu,cpuacct:/\n", {"/": ("-1", "100000")})
    assert count(root, proc, affinity=5) == 5


def test_v1_nested_and_mount_name(tmp_path):
    root = tmp_path / "cgroup"
    proc = v1_tree(root, "2:cpu:/docker/abc\n",
                   {"/": ("-1", "100000"), "/docker": ("-1", "100000"),
                    "/docker/abc": ("150000", "100000")}, mount="cpu")
    assert count(root, proc) == 2


# --- affinity, the host, nothing at all -----------------------------------------------------

def test_affinity_below_quota(tmp_path):
    root = tmp_path / "cgroup"
    assert count(root, v2_tree(root, _="800000 100000"), affinity=2) == 2


def test_no_cgroup_files(tmp_path):
    assert count(tmp_path / "none", tmp_path / "no-proc-cgroup", affinity=3, host=8) == 3
    assert count(tmp_path / "none", tmp_path / "no-proc-cgroup", affinity=None, host=8) == 8
    assert count(tmp_path / "none", tmp_path / "no-proc-cgroup", affinity=None, host=None) == 1


def test_this_machine():
    # The real files: never more than the affinity mask or the host's CPUs, never below 1.
    found = cpus.usable_cpus()
    assert 1 <= found <= len(os.sched_getaffinity(0)) <= (os.cpu_count() or found)


def test_default_workers_follow_affinity():
    """`shardis up` without --workers: the config default is taken under `taskset -c 0`."""
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no sched_setaffinity on this platform")
    code = "from shardis import config; print(config.DIRECTIVES['workers'].default)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}))
    assert result.stdout.strip() == "1"
