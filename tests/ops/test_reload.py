"""Hot reload of a running `gateway run`: SIGHUP or `gateway reload`, valid files in force for new requests,
in-flight requests untouched, invalid files and restart-only changes refused with the old config kept."""
from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import yaml

from gateway.sources.users import hash_password
from tests.conftest import PASSWORDS, ROOT, base_config, gateway_command
from tests.support.processes import BOUND, eventually, sample


async def gateway_cli(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(*gateway_command(), *args, cwd=ROOT,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), BOUND)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def write(path: Path, raw: dict, port: int) -> None:
    path.write_text(yaml.safe_dump({**raw, "listen": {"host": "127.0.0.1", "port": port}}))


async def test_reload_swaps_config_and_users_without_dropping_in_flight_requests(
    gateway_process, gated, upstream, users_file, tmp_path
):
    pid_file = tmp_path / "gw.pid"
    slow = {"name": "slow", "prefix": "/slow", "upstream": gated.url, "headers": {"X-User-Id": "sub"}}
    raw = base_config(upstream, users_file)
    raw["routes"] = [slow, *raw["routes"]]
    port = gateway_process(raw, "--pid-file", str(pid_file))
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as s:
        async with s.post(base + "/auth/token", json={"username": "alice", "password": PASSWORDS["alice"]}) as resp:
            access = (await resp.json())["access"]
        in_flight = asyncio.create_task(s.get(base + "/slow/x", headers={"Authorization": f"Bearer {access}"}))
        await asyncio.wait_for(gated.started.wait(), BOUND)

        # New file: the slow route is gone, /extra is new, and the users file gains carol.
        users = yaml.safe_load(users_file.read_text())
        users["users"]["carol"] = {"password_hash": hash_password("carol-password"), "claims": {"roles": ["user"]}}
        new_users = tmp_path / "users2.yaml"
        new_users.write_text(yaml.safe_dump(users))
        new = base_config(upstream, new_users)
        new["routes"].append({"name": "extra", "prefix": "/extra", "upstream": upstream, "auth": "none"})
        write(gateway_process.config_path(port), new, port)
        code, out = await gateway_cli("reload", "--pid-file", str(pid_file))
        assert code == 0, out

        async def extra_served() -> bool:
            async with s.get(base + "/extra/x") as resp:
                return resp.status == 200
        await eventually(extra_served, "the new route")
        async with s.get(base + "/slow/x") as resp:
            assert resp.status == 404  # new requests see the new config...
        async with s.post(base + "/auth/token", json={"username": "carol", "password": "carol-password"}) as resp:
            assert resp.status == 200
        gated.release.set()
        resp = await asyncio.wait_for(in_flight, BOUND)  # ...the one in flight finishes on the old one
        assert resp.status == 200 and await resp.read() == gated.body
        assert resp.headers["X-Seen-User"] == "alice"
    assert "configuration reloaded" in gateway_process.log(port)


async def test_invalid_or_restart_only_changes_are_refused_and_the_old_config_stays(
    gateway_process, upstream, users_file, tmp_path
):
    raw = base_config(upstream, users_file)
    port = gateway_process(raw)
    proc = gateway_process.procs[port]
    config_path = gateway_process.config_path(port)
    base = f"http://127.0.0.1:{port}"

    def refusals() -> int:
        return gateway_process.log(port).count("reload refused")

    bad = base_config(upstream, users_file)
    bad["routes"][1]["upstream"] = "ftp://nowhere"
    bad["routes"][2]["auth"] = "sometimes"
    broken_yaml = "routes: [\n"
    other_store = {**raw, "store": {"backend": "memory", "prefix": "other:"}}
    async with aiohttp.ClientSession() as s:
        for expected, content in [
            (": routes[1].upstream: not an absolute http(s) URL without query or fragment (got 'ftp://nowhere')", bad),
            ("invalid YAML", broken_yaml),
            ("store: changing backend, url, prefix or timeout needs a restart", other_store),
        ]:
            before = refusals()
            if isinstance(content, str):
                config_path.write_text(content)
            else:
                write(config_path, content, port)
            proc.send_signal(signal.SIGHUP)

            async def refused(before: int = before, expected: str = expected) -> bool:
                return refusals() > before and expected in gateway_process.log(port)  # the problem lines follow the refusal
            await eventually(refused, f"the reload to be refused ({expected})")
            assert expected in gateway_process.log(port)
            async with s.get(base + "/public/x") as resp:  # the running config still serves
                assert resp.status == 200
            async with s.post(base + "/auth/token", json={"username": "bob", "password": PASSWORDS["bob"]}) as resp:
                assert resp.status == 200
        assert "routes[2].auth" in gateway_process.log(port)  # every problem of a file is logged
        async with s.get(base + "/metrics") as resp:
            text = await resp.text()
        assert sample(text, "gateway_config_reloads_total", result="failure") == 3
        assert sample(text, "gateway_config_reloads_total", result="success") == 0
    assert proc.poll() is None


async def test_gateway_reload_checks_the_file_before_signalling(gateway_process, upstream, users_file, tmp_path):
    pid_file = tmp_path / "gw.pid"
    port = gateway_process(base_config(upstream, users_file), "--pid-file", str(pid_file))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"tokens": {"secret": "short"}, "users_file": str(users_file)}))
    code, out = await gateway_cli("reload", "--pid-file", str(pid_file), "--config", str(bad))
    assert code == 1 and "tokens.secret" in out and "problem(s), not reloading" in out
    code, out = await gateway_cli("reload", "--pid-file", str(tmp_path / "missing.pid"))
    assert code == 1 and "cannot signal" in out
    await asyncio.sleep(0.3)
    assert "SIGHUP" not in gateway_process.log(port)
