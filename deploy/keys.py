#!/usr/bin/env python3
"""CURVE keys for a router and N workers, laid out one folder per process; installed in the
image as ``shardis-deploy-keys``.

    shardis-deploy-keys DIR --workers 3 [--owner 10001:10001] [--rotate NAME ...]
    shardis-deploy-keys DIR --workers 3 --k8s-secret shardis-curve > curve-secret.yaml

The first form makes what is missing (and replaces the pairs named by ``--rotate``: router,
worker-0, ...), so running it again is harmless. Each process gets a folder holding only what
it needs, which docker-compose.yml hands to it as a Compose secret of its own:

    DIR/router/    router.key router.pub worker-0.pub worker-1.pub ...
                   (its own pair, and each worker's public key: --curve-server-key)
    DIR/worker-N/  worker-N.key worker-N.pub router.pub
                   (its own pair, and the router's public key: --curve-authorized-keys)

A secret key never leaves its owner's folder; public keys are copied to the peers that need
them, again on every run, so that a rotated key reaches them. ``--owner`` hands the files to
the uid:gid the containers run as (the image's 10001), since Compose mounts secret files with
their owner and mode on the host and a secret key is readable by its owner only (0600).

The second form writes nothing: it prints a Kubernetes Secret (k8s/curve-secret.yaml.template)
holding every pair of DIR, for ``kubectl apply -f -``.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import sys
from pathlib import Path

from shardis.linksec import ConfigError, keygen

ROUTER = "router"


def names(workers: int) -> list[str]:
    """Every key pair's name: the router's, then the workers' in index order."""
    return [ROUTER, *(f"worker-{index}" for index in range(workers))]


def own_files(root: Path, name: str) -> tuple[Path, Path]:
    """Where ``name``'s own pair lives: (public, secret)."""
    return root / name / f"{name}.pub", root / name / f"{name}.key"


def peer_copies(root: Path, workers: int) -> list[tuple[Path, Path]]:
    """(source, copy) for every public key a peer needs."""
    router_pub, _ = own_files(root, ROUTER)
    copies = []
    for name in names(workers)[1:]:
        worker_pub, _ = own_files(root, name)
        copies.append((worker_pub, root / ROUTER / worker_pub.name))
        copies.append((router_pub, root / name / router_pub.name))
    return copies


def make_pair(root: Path, name: str, replace: bool) -> bool:
    """Write ``name``'s pair unless both files exist (or ``replace``); True if written."""
    public, secret = own_files(root, name)
    if public.is_file() and secret.is_file() and not replace:
        return False
    public.parent.mkdir(parents=True, exist_ok=True)
    for path in (public, secret):  # keygen refuses to overwrite: half a pair is no pair
        path.unlink(missing_ok=True)
    keygen(str(root / name / name))
    return True


def copy_if_changed(source: Path, target: Path) -> None:
    if not target.is_file() or target.read_bytes() != source.read_bytes():
        shutil.copyfile(source, target)
        target.chmod(0o644)


def chown_keys(root: Path, workers: int, owner: tuple[int, int]) -> None:
    """Hand the key files to ``owner``. Only the files: the folders stay their creator's (on
    Compose, the user's checkout), readable by all, so that user can still remove them."""
    for name in names(workers):
        for path in (root / name).glob("*.*"):
            if path.suffix in (".key", ".pub"):
                os.chown(path, *owner, follow_symlinks=False)


def ensure(root: Path, workers: int, rotate: frozenset[str] = frozenset(),
           owner: tuple[int, int] | None = None) -> list[str]:
    """Make the layout described in the module's doc; the names of the pairs written."""
    unknown = rotate - set(names(workers))
    if unknown:
        raise ValueError(f"--rotate: no key pair named {', '.join(sorted(unknown))}")
    written = [name for name in names(workers) if make_pair(root, name, name in rotate)]
    for source, target in peer_copies(root, workers):
        copy_if_changed(source, target)
    if owner is not None:
        chown_keys(root, workers, owner)
    return written


def k8s_secret(root: Path, workers: int, secret_name: str) -> str:
    """A Secret manifest holding every pair under ``root`` (base64 ``data``, one key per
    file name), as k8s/curve-secret.yaml.template describes it."""
    lines = ["apiVersion: v1", "kind: Secret", "metadata:", f"  name: {secret_name}",
             "type: Opaque", "data:"]
    for name in names(workers):
        for path in own_files(root, name):
            if not path.is_file():
                raise ValueError(f"{path} is missing: run without --k8s-secret first")
            lines.append(f"  {path.name}: {base64.b64encode(path.read_bytes()).decode()}")
    return "\n".join(lines) + "\n"


def parse_owner(text: str) -> tuple[int, int]:
    uid, _, gid = text.partition(":")
    try:
        return int(uid), int(gid or uid)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not UID:GID: {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shardis-deploy-keys", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=Path, help="the folder that holds one folder per process")
    parser.add_argument("--workers", type=int, required=True, help="how many workers")
    parser.add_argument("--owner", type=parse_owner, metavar="UID:GID",
                        help="hand the files to this owner (the containers' user)")
    parser.add_argument("--rotate", nargs="+", default=[], metavar="NAME",
                        help="replace these pairs (router, worker-0, ...)")
    parser.add_argument("--k8s-secret", metavar="NAME",
                        help="print a Kubernetes Secret of this name holding every pair")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.workers < 1:
        print("shardis-deploy-keys: error: --workers must be at least 1", file=sys.stderr)
        return 2
    try:
        if args.k8s_secret:
            sys.stdout.write(k8s_secret(args.dir, args.workers, args.k8s_secret))
            return 0
        written = ensure(args.dir, args.workers, frozenset(args.rotate), args.owner)
    except (ValueError, OSError, ConfigError) as exc:
        print(f"shardis-deploy-keys: error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.dir}: new key pairs: {', '.join(written) or 'none (all present)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
