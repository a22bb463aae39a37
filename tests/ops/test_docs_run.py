"""The docs followed literally: every YAML configuration and every shell block of README.md and docs/.

- A ```yaml block is a gateway configuration: run through ``gateway check`` as it is when it is a
  whole file (``tokens`` and a user source), else merged over a minimal configuration (its
  top-level keys replace the minimal one's). Markers (an HTML comment right before the block):
  ``wrap KEY`` puts the block under KEY (``users`` for a list of sources), ``users-file`` checks
  it as the users file, ``file NAME`` only writes it for a later block of the page.
- A shell block (```sh/bash/console, or any block of ``$ `` lines) runs for real with bash, in a
  temp dir holding the repo's config/ and deploy/, ``gateway`` on PATH; the blocks of one page
  share the dir in page order, so a key a block generates is there for the config after it.
  A ``$ `` transcript runs command by command in one shell and its output must match what the
  docs show (JSON field by field; ``...`` in a value and the volatile fields are not compared).
  ``gateway CONFIG`` starts that config first (with its example upstream) and points the block's
  ``localhost:8080`` and ``127.0.0.1:9001`` at it.
- ``container ENGINE`` blocks (docs/deployment.md) are run by ``make test-container``
  (scripts/container-test.sh); here they run against a stub engine that records each command,
  and every config a recorded ``run`` mounts is checked with the container's mounts and environment.
- ``skip (reason)`` opts a block out; a block that neither runs nor opts out fails.

Everything ``${VAR}`` a block needs and the page does not set is set to a placeholder.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.cli import build_parser
from gateway.config.model import GatewayConfig
from tests.conftest import ROOT
from tests.support.processes import free_port, wait_for_port

_spec = importlib.util.spec_from_file_location("docs_blocks", ROOT / "scripts" / "docs_blocks.py")
assert _spec and _spec.loader
docs_blocks = importlib.util.module_from_spec(_spec)
sys.modules["docs_blocks"] = docs_blocks
_spec.loader.exec_module(docs_blocks)
Block = docs_blocks.Block

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SHELL = {"sh", "bash", "shell", "console"}
KINDS = {"skip", "container", "wrap", "users-file", "file", "gateway"}
PLACEHOLDER = "docs-test-placeholder-value-0123456789abcdefghijklmnopq"
PLACEHOLDERS = {"REDIS_URL": "redis://127.0.0.1:6379/0"}
MINIMAL: dict[str, Any] = {"tokens": {"secret": "${GATEWAY_SECRET}"}, "users_file": "users.yaml"}
VOLATILE = {"X-Request-ID", "User-Agent"}  # differ on every request or with the local curl
BIN = Path(sys.executable).parent


def is_shell(block: Block) -> bool:
    return block.lang in SHELL or any(line.startswith("$ ") for line in block.text.splitlines())


def is_yaml(block: Block) -> bool:
    return block.lang in {"yaml", "yml"}


def page_blocks(page: Path) -> list[Block]:
    return [b for b in docs_blocks.blocks(page) if is_shell(b) or is_yaml(b) or b.marker]


def rel(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


# -- the environment a page's blocks run in ------------------------------------------------------

def workdir(tmp: Path) -> Path:
    for name in ("config", "deploy"):
        shutil.copytree(ROOT / name, tmp / name)
    shutil.copy(ROOT / "config" / "users.yaml", tmp / "users.yaml")
    return tmp


def shell_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "REDIS_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **(extra or {})}


def needed_vars(text: str) -> dict[str, str]:
    """``${VAR}`` without a default -> a placeholder (a secret of enough bytes, or a URL where one is needed)."""
    return {name: PLACEHOLDERS.get(name, PLACEHOLDER) for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text)}


def gateway_check(path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                  capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``gateway check PATH``: the CLI's own command, in this process (a subprocess each would take seconds)."""
    with monkeypatch.context() as patch:
        for name in [k for k in os.environ if k.startswith(("GATEWAY_", "REDIS_"))]:
            patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        capsys.readouterr()
        args: argparse.Namespace = build_parser().parse_args(["check", str(path)])
        code = args.func(args)
        out = capsys.readouterr()
    return code, out.out + out.err


# -- YAML ------------------------------------------------------------------------------------------

def config_of(block: Block) -> tuple[str, str]:
    """(file name, text) to check for a YAML block, by its marker."""
    data = yaml.safe_load(block.text)
    kind = block.kind
    if kind == "users-file":
        return "users.yaml", block.text
    if kind == "wrap":
        key = block.marker.split()[1]
        whole = {**MINIMAL, key: data}
    else:
        assert isinstance(data, dict), f"{block.where}: not a mapping; mark it `wrap KEY` or `skip (reason)`"
        unknown = set(data) - set(GatewayConfig.model_fields)
        assert not unknown, f"{block.where}: {sorted(unknown)} are not configuration keys; mark the block"
        whole = {**MINIMAL, **data}
    if "users" in whole and kind != "users-file":
        whole.pop("users_file", None)
    return "gateway.yaml", yaml.safe_dump(whole, sort_keys=False)


def check_yaml(block: Block, tmp: Path, monkeypatch: pytest.MonkeyPatch,
               capsys: pytest.CaptureFixture[str]) -> str | None:
    if block.kind == "file":
        (tmp / block.marker.split()[1]).write_text(block.text)
        return None
    name, text = config_of(block)
    config = tmp / "gateway.yaml"
    if name == "users.yaml":
        (tmp / "users.yaml").write_text(text)
        text = yaml.safe_dump(MINIMAL)
    config.write_text(text)
    env = {"GATEWAY_SECRET": PLACEHOLDER, **needed_vars(block.text)}
    code, out = gateway_check(config, env, monkeypatch, capsys)
    if name == "users.yaml":
        shutil.copy(ROOT / "config" / "users.yaml", tmp / "users.yaml")
    return None if code == 0 else f"{block.where}: gateway check failed:\n{out}"


# -- shell -----------------------------------------------------------------------------------------

def transcript(text: str) -> list[tuple[str, list[str]]]:
    """``$ command`` lines (with ``\\`` continuations) and the output lines the docs show after each."""
    steps: list[tuple[str, list[str]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("$ "):
            command = line[2:]
            while command.endswith("\\") and i + 1 < len(lines):
                i += 1
                command = command[:-1] + " " + lines[i].strip()
            steps.append((command, []))
        elif steps and line.strip() and not line.startswith("# "):
            steps[-1][1].append(line)
        i += 1
    return steps


def same(expected: Any, actual: Any, where: str = "") -> list[str]:
    if isinstance(expected, dict) and isinstance(actual, dict):
        problems = [f"{where}: keys {sorted(set(expected) ^ set(actual))}"] if set(expected) != set(actual) else []
        for key in set(expected) & set(actual):
            if key not in VOLATILE:
                problems += same(expected[key], actual[key], f"{where}.{key}")
        return problems
    if isinstance(expected, str) and "..." in expected and isinstance(actual, str):
        return [] if actual.startswith(expected.split("...")[0]) else [f"{where}: {actual!r} is not {expected!r}"]
    return [] if expected == actual else [f"{where}: {actual!r}, the docs show {expected!r}"]


def compare(shown: list[str], got: str) -> list[str]:
    if not shown:
        return []
    text = "\n".join(shown)
    try:
        expected = json.loads(text.replace("\n ", " "))
    except ValueError:
        return [] if got.strip() == text.strip() else [f"output:\n{got}\nthe docs show:\n{text}"]
    try:
        actual = json.loads(got)
    except ValueError:
        return [f"not JSON: {got[:300]!r}"]
    return same(expected, actual)


def run_shell(block: Block, tmp: Path, env: dict[str, str], rewrite: dict[str, str]) -> str | None:
    text = block.text
    for old, new in rewrite.items():
        text = text.replace(old, new)
    steps = transcript(text)
    if not steps:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", text], cwd=tmp, env=env,
                              capture_output=True, text=True, timeout=60)
        return None if done.returncode == 0 else f"{block.where}: exit {done.returncode}\n{done.stdout}{done.stderr}"
    sep = "@@docs-test-step@@"
    script = "".join(f"printf '\\n{sep}\\n'\n{command} 2>&1 || true\n" for command, _ in steps)
    done = subprocess.run(["bash", "-c", script], cwd=tmp, env=env, capture_output=True, text=True, timeout=60)
    outputs = done.stdout.split(f"\n{sep}\n")[1:]
    problems = []
    for (command, shown), got in zip(steps, outputs, strict=True):
        problems += [f"$ {command}\n  {p}" for p in compare(shown, got)]
    return f"{block.where}:\n" + "\n".join(problems) if problems else None


class Gateway:
    """``gateway run --config CONFIG --example-upstream`` on free ports, for a block marked ``gateway CONFIG``."""

    def __init__(self, tmp: Path, config: str) -> None:
        self.port, self.upstream = free_port(), free_port()
        path = tmp / config
        path.write_text(path.read_text().replace("127.0.0.1:9001", f"127.0.0.1:{self.upstream}"))
        self.log = open(tmp / "gateway.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "--config", str(path), "--example-upstream",
             "--example-upstream-port", str(self.upstream)],
            cwd=tmp, stdout=self.log, stderr=subprocess.STDOUT,
            env=shell_env({"GATEWAY_PORT": str(self.port), "GATEWAY_WORKERS": "1"}))
        wait_for_port(self.port, 30)
        wait_for_port(self.upstream, 30)

    @property
    def rewrite(self) -> dict[str, str]:
        return {"localhost:8080": f"localhost:{self.port}", "127.0.0.1:9001": f"127.0.0.1:{self.upstream}"}

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()


# -- containers ------------------------------------------------------------------------------------

def image_env() -> dict[str, str]:
    """The ENV of the Dockerfile's final stage."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    env = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(dict(part.split("=", 1) for part in shlex.split(line[4:])))
    return env


def recorded_runs(block: Block, tmp: Path) -> list[tuple[list[str], dict[str, str]]]:
    """The block run by bash with the engine a function that records each command and the shell's
    environment (nothing is built or started)."""
    record = tmp / "engine-calls.jsonl"
    engine = block.marker.split()[1]
    stub = (f'{engine}() {{ python3 -c \'import json, os, sys; print(json.dumps([sys.argv[1:], dict(os.environ)]))\' '
            f'"$@" >> {record}; }}\n')
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", stub + block.text], cwd=ROOT, env=shell_env(),
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"{block.where}: {done.stderr}"
    calls = [tuple(json.loads(line)) for line in record.read_text().splitlines()]
    record.unlink()
    return calls


def container_checks(call: list[str], shell: dict[str, str], tmp: Path, monkeypatch: pytest.MonkeyPatch,
                     capsys: pytest.CaptureFixture[str]) -> list[str]:
    """For a recorded ``run``: ``gateway check`` on what it mounts, with the container's environment."""
    args = call[call.index("run") + 1:]
    env, mounts, rest = dict(image_env()), [], []
    i = 0
    while i < len(args):
        if args[i] in ("-e", "-v", "-p", "--ulimit", "--name", "--network"):
            if args[i] == "-e":
                name, _, value = args[i + 1].partition("=")
                env[name] = value if "=" in args[i + 1] else shell.get(name, "")
            if args[i] == "-v":
                mounts.append(args[i + 1].split(":")[:2])
            i += 2
        elif args[i].startswith("-"):
            i += 1
        else:
            rest = args[i:]
            break
    root = tmp / "container"
    shutil.rmtree(root, ignore_errors=True)
    for source, target in mounts:
        destination = root / target.lstrip("/")
        if Path(source).is_dir():
            shutil.copytree(source, destination)
        else:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, destination)
    command = rest[1:] or ["run", "--config", "/etc/gateway/config.yaml"]  # the image's CMD
    config = command[command.index("--config") + 1] if "--config" in command else command[1]
    code, out = gateway_check(root / config.lstrip("/"), env, monkeypatch, capsys)
    return [] if code == 0 else [f"{' '.join(call)}: the mounted config fails in the container:\n{out}"]


# -- the tests -------------------------------------------------------------------------------------

def test_the_blocks_are_found():
    found = [b for page in PAGES for b in page_blocks(page)]
    assert sum(is_yaml(b) for b in found) > 25 and sum(is_shell(b) for b in found) > 5


def marker_problems(page: Path) -> list[str]:
    problems = []
    for block in docs_blocks.blocks(page):
        if block.marker is None:
            continue
        if block.kind not in KINDS:
            problems.append(f"{block.where}: unknown marker {block.marker!r}")
        if block.kind == "skip" and not re.fullmatch(r"skip \(.+\)", block.marker):
            problems.append(f"{block.where}: a skip needs its reason: <!-- docs-test: skip (why) -->")
        if block.kind == "container" and page.is_relative_to(ROOT) and rel(page) != "docs/deployment.md":
            problems.append(f"{block.where}: make test-container runs the container blocks of docs/deployment.md only")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_every_marker_is_known(page: Path):
    problems = marker_problems(page)
    assert not problems, "\n".join(problems)


PAGES_WITH_BLOCKS = [p for p in PAGES if page_blocks(p)]


def run_page(page: Path, tmp: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """Every block of the page in order, in one temp dir; the problems found."""
    tmp = workdir(tmp)
    problems: list[str] = []
    for block in page_blocks(page):
        if block.kind == "skip":
            continue
        if block.kind == "container":
            for call, shell in recorded_runs(block, tmp):
                if "run" in call:
                    problems += container_checks(call, shell, tmp, monkeypatch, capsys)
            continue
        if is_yaml(block) or (block.kind == "file" and not is_shell(block)):
            problem = check_yaml(block, tmp, monkeypatch, capsys)
        elif is_shell(block):
            gateway = Gateway(tmp, block.marker.split()[1]) if block.kind == "gateway" else None
            try:
                env = shell_env(needed_vars(block.text))
                problem = run_shell(block, tmp, env, gateway.rewrite if gateway else {})
            finally:
                if gateway:
                    gateway.stop()
        else:
            problem = f"{block.where}: marked {block.marker!r} but neither YAML nor shell"
        if problem:
            problems.append(problem)
    return problems


@pytest.mark.parametrize("page", PAGES_WITH_BLOCKS, ids=rel)
def test_the_page_runs(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       capsys: pytest.CaptureFixture[str]):
    problems = run_page(page, tmp_path, monkeypatch, capsys)
    assert not problems, "\n\n".join(problems)


NEGATIVE = {
    # what the issue found: the container check without the secret, the recipe's key file name
    "container check without GATEWAY_SECRET": (
        "<!-- docs-test: container docker (a control) -->\n```sh\n"
        'docker run --rm -v "$PWD/config:/etc/gateway:ro" jwt-gateway check /etc/gateway/example.yaml\n```\n',
        "the example secret from the docs"),
    "a key file that keys generate does not write": (
        "```sh\ngateway keys generate --alg ES256 --out keys/ --kid gw-1\n```\n\n```yaml\ntokens:\n  keys:\n"
        "    - {kid: gw-1, algorithm: ES256, private_key_file: keys/gw-1.key, active: true}\n```\n",
        "keys/gw-1.key"),
    "a fragment that is no configuration": ("```yaml\ntimeout: 3s\n```\n", "not configuration keys"),
    "a command that fails": ("```sh\ngateway check no-such.yaml\n```\n", "exit 1"),
    "output other than the docs show": ("```console\n$ echo '{\"code\": \"a\"}'\n{\"code\": \"b\"}\n```\n",
                                        "the docs show 'b'"),
}


@pytest.mark.parametrize("name", NEGATIVE)
def test_negative_controls(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]):
    """Broken blocks fail: the two the issue found, and one of each kind."""
    text, expected = NEGATIVE[name]
    page = tmp_path / "page.md"
    page.write_text(text)
    work = tmp_path / "work"
    work.mkdir()
    try:
        problems = run_page(page, work, monkeypatch, capsys)
    except AssertionError as exc:  # a block the runner refuses to interpret
        problems = [str(exc)]
    assert any(expected in p for p in problems), problems


def test_unknown_and_reasonless_markers_fail(tmp_path: Path):
    page = tmp_path / "page.md"
    page.write_text("<!-- docs-test: skip -->\n```sh\nfalse\n```\n\n<!-- docs-test: later -->\n```sh\nfalse\n```\n")
    problems = marker_problems(page)
    assert len(problems) == 2 and "needs its reason" in problems[0] and "unknown marker" in problems[1], problems


def test_container_test_runs_the_documented_blocks():
    """make test-container takes its commands from docs/deployment.md, one block per engine."""
    script = (ROOT / "scripts" / "container-test.sh").read_text()
    assert 'scripts/docs_blocks.py container "$ENGINE" docs/deployment.md' in script
    assert 'eval "$BLOCK"' in script
    for engine in ("docker", "podman"):
        block = docs_blocks.container_block(ROOT / "docs" / "deployment.md", engine)
        assert f"{engine} " in block.text and "build" in block.text
