"""Rendering results: a Markdown report and a PNG plot.

Works on the in-memory results and on a reloaded results.json (whose
integer keys became strings), so ``python -m bench.report results.json``
re-renders without re-measuring.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

__all__ = ["markdown", "plot", "verdicts"]


def _get(d: dict[Any, Any], key: Any) -> Any:
    return d[key] if key in d else d[str(key)]


def _n(x: float | None, digits: int = 0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:,.{digits}f}"


def _med(s: dict[str, float], digits: int = 0) -> str:
    return _n(s["median"], digits)


def _range(s: dict[str, float], digits: int = 0) -> str:
    if s.get("n", 0) < 2:
        return "–"
    return f"{_n(s['min'], digits)}–{_n(s['max'], digits)} (±{s['spread_pct'] / 2:.0f}%)"


def _ratio(s: dict[str, float] | None) -> str:
    if not s or not s.get("n"):
        return "–"
    return f"{s['median']:.2f}x" + (f" ({s['min']:.2f}–{s['max']:.2f})" if s["n"] > 1 else "")


def _cpu(v: dict[str, Any]) -> str:
    """Median CPU time per request (µs) of a summary, if measured."""
    cpu = v.get("cpu_us")
    return _med(cpu) if cpu and cpu.get("n") else "–"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|",
            *("| " + " | ".join(r) + " |" for r in rows), ""]


def _steady(s: dict[str, Any]) -> list[str]:
    out = ["## Steady state: `GET /api/v1/items/42` with a valid token", "",
           "RPS: median of the rounds, range in brackets. Latency: median over rounds of wrk's percentiles "
           "(closed loop, so at high concurrency it is mostly queueing).", ""]
    rows = []
    for name, byc in s["summary"].items():
        for c, v in byc.items():
            rows.append([str(c), name, _med(v["rps"]), _range(v["rps"]), _med(v["p50_ms"], 2),
                         _med(v["p99_ms"], 2), _cpu(v), "" if v["valid"] else "**non-2xx!**"])
    rows.sort(key=lambda r: int(r[0]))
    out += _table(["conns", "target", "RPS", "RPS range", "p50 ms", "p99 ms", "CPU µs/req", ""], rows)
    if s.get("ratios"):
        refs = list(s["ratios"])
        cs = list(next(iter(s["ratios"].values())))
        rows = []
        for c in cs:
            add = s.get("added_latency", {})
            extra = [_med(_get(add, c)["p99_ms"], 2)] if add else ["–"]
            rows.append([str(c)] + [_ratio(_get(s["ratios"][r], c)) for r in refs] + extra)
        out += ["Ratios of RPS measured in the same round (median, range over rounds):", ""]
        out += _table(["conns", *refs, "gateway p99 − direct p99 (ms, saturated)"], rows)
    for name, byc in s.get("diagnosis", {}).items():
        for c, codes in byc.items():
            total = sum(codes.values())
            out += [f"**{name} at {c} connections answered non-2xx**; a 3 s diagnostic run counted: "
                    + ", ".join(f"`{k}` × {n:,}" for k, n in sorted(codes.items(), key=lambda kv: -kv[1]))
                    + (f" ({total:,} in all)" if total else " (none this time: intermittent)"), ""]
    rss = s.get("peak_rss_mib", {})
    out += ["Peak RSS (VmHWM, process tree) at the end of the steady state: " +
            ", ".join(f"{n} {_n(v, 1)} MiB" for n, v in rss.items()) +
            ". The gateway's includes its startup argon2 dummy hash and one login (64 MiB each, argon2-cffi "
            "defaults); the direct figure is the upstream's.", ""]
    return out


def _latency(s: dict[str, Any]) -> list[str]:
    out = [f"## Latency below saturation: {s['connections']} connections, ~{s['offered_rps']} req/s offered", "",
           "Each connection pauses ~%d ms (±50%%) between requests, so latency is service time, not queueing."
           % s["delay_ms"], ""]
    rows = []
    for n, v in s["summary"].items():
        add = s["added"].get(f"{n}-direct")
        rows.append([n, _med(v["rps"]), _med(v["p50_ms"], 2), _med(v["p99_ms"], 2),
                     _med(add["p50_ms"], 2) if add else "–", _med(add["p99_ms"], 2) if add else "–", _cpu(v)])
    return out + _table(["target", "RPS", "p50 ms", "p99 ms", "added p50 ms", "added p99 ms", "CPU µs/req"], rows)


def _refresh(s: dict[str, Any]) -> list[str]:
    v = s["summary"]
    out = [f"## Refresh storm: {s['clients']} clients rotating their own refresh tokens", "",
           "Each connection presents its own refresh token and takes the rotated one for its next request. "
           "Tokens come from real logins made just before (their rate is shown for scale).", ""]
    out += _table(["successful refreshes/s", "all answers/s", "p50 ms", "p99 ms", "logins/s (argon2)", "all 200?"],
                  [[_med(v.get("ok_rps", v["rps"])), _med(v["rps"]), _med(v["p50_ms"], 2), _med(v["p99_ms"], 2),
                    _n(s["login_per_s"], 1), "yes" if v["valid"] else "**no**"]])
    codes: dict[str, int] = {}
    for r in s["runs"]:
        for k, n in r.get("codes", {}).items():
            codes[k] = codes.get(k, 0) + n
    if codes:
        out += ["Non-200 answers: " + ", ".join(f"`{k}` × {n:,}" for k, n in sorted(codes.items(), key=lambda kv: -kv[1]))
                + ". `pool exhausted` counts requests sent without a live token because earlier refreshes failed "
                "(each failure loses that client's token).", ""]
    rss = s.get("rss_mib")
    if rss:
        out += [f"Gateway RSS: {rss['before_logins']:.1f} MiB before the logins, {rss['after_logins']:.1f} MiB "
                f"after them, {rss['after_storm']:.1f} MiB after the storm; peak (VmHWM) {s['peak_rss_mib']:.1f} MiB "
                "(argon2id with argon2-cffi defaults uses 64 MiB per concurrent verification).", ""]
    return out


def _compare(title: str, note: str, by: dict[str, Any], extra: list[str]) -> list[str]:
    out = [title, "", note, ""]
    rows = []
    for c, blk in by.items():
        names = list(blk["summary"])
        for n in names:
            v = blk["summary"][n]
            rows.append([str(c), n, _med(v["rps"]), _range(v["rps"]), _med(v["p50_ms"], 2), _med(v["p99_ms"], 2),
                         _ratio(blk["ratio"]) if n == names[-1] else ""])
    return out + _table(["conns", "variant", "RPS", "RPS range", "p50 ms", "p99 ms", "ratio"], rows) + extra


def _routes(s: dict[str, Any]) -> list[str]:
    extra = ["Startup: " + ", ".join(f"{n} {v:.1f}s" for n, v in s["startup_s"].items()) + ". Peak RSS: "
             + ", ".join(f"{n} {_n(v, 1)} MiB" for n, v in s["peak_rss_mib"].items()) + ".", ""]
    return _compare("## Route table size: 20 vs 10,000 routes", "Matching route second to last in both; "
                    "ratio = big / small (1.00 = no cost).", s["by_c"], extra)


def _families(s: dict[str, Any]) -> list[str]:
    r = s["redis"]
    extra = [f"Redis db with families: {r['dbsize']:,} keys, Redis used memory {r['redis_used_mib']:.0f} MiB "
             f"(filled in {s['fill_s']:.1f}s).", "",
             f"Refresh storms ({s.get('refresh_clients', '?')} clients each, order A B B A): " + ", ".join(
                 f"{n} {_med(v.get('ok_rps', v['rps']))} successful/s, p99 {_med(v['p99_ms'], 2)} ms"
                 + ("" if v["valid"] else " (**non-200 answers**)") for n, v in s["refresh"].items())
             + f"; ratio {_ratio(s['refresh_ratio']) if isinstance(s['refresh_ratio'], dict) else s['refresh_ratio']}.", "",
             "Gateway peak RSS: " + ", ".join(f"{n} {_n(v, 1)} MiB" for n, v in s["peak_rss_mib"].items()), ""]
    return _compare(f"## {s['families']:,} live refresh families in Redis", "Access requests; ratio = full / "
                    "near-empty.", {"64": s["access"]}, extra)


def _stream(s: dict[str, Any]) -> list[str]:
    rows = [[n, _n(v["mb_per_s"], 1), _n(v["seconds"], 1), _n(v["rss_before_mib"], 1), _n(v["rss_peak_mib"], 1),
             _n(v["rss_growth_mib"], 1), "yes" if v["ok"] else "**no**"] for n, v in s["runs"].items()]
    return [f"## Streamed upload: {s['mib']:,} MiB POST (chunked, generated client-side)", "",
            "RSS of the proxy's process tree sampled every 50 ms (for `direct`: the upstream's).", "",
            *_table(["target", "MiB/s", "seconds", "RSS before MiB", "RSS peak MiB", "growth MiB", "all bytes arrived"],
                    rows)]


def _flood(s: dict[str, Any]) -> list[str]:
    rows = []
    for n, v in s["summary"].items():
        first = s["first_response"].get(n)
        code = f"{first['status']} {first['body'].get('code', '')}" if first and isinstance(first["body"], dict) else "200"
        rows.append([n, code, _med(v["rps"]), _range(v["rps"]), _med(v["p50_ms"], 2), _med(v["p99_ms"], 2),
                     _ratio(s["ratio_vs_valid"].get(n))])
    return [f"## Invalid-token flood at {s['connections']} connections (gateway only)", "",
            "ratio = RPS of the variant / RPS of valid tokens in the same round (>1: cheaper than acceptance).", "",
            *_table(["variant", "answer", "RPS", "RPS range", "p50 ms", "p99 ms", "ratio vs valid"], rows)]


def _workers(s: dict[str, Any]) -> list[str]:
    extra = ["Peak RSS: " + ", ".join(f"{n} {_n(v, 1)} MiB" for n, v in s["peak_rss_mib"].items()), ""]
    return _compare(f"## `--workers {s['workers']}` vs one worker", "Same machine (2 cores shared with wrk and "
                    "the upstream); ratio = multi / single.", s["by_c"], extra)


def _revcache(s: dict[str, Any]) -> list[str]:
    per_req = s.get("redis_commands_per_request", {})
    metrics = s.get("cache_metrics", {})
    extra = ["Redis revocation checks (EXISTS) per request, median over runs: "
             + ", ".join(f"{n} {v['median']:.2f}" for n, v in per_req.items()) + ". Cache counters at the end: "
             + ", ".join(f"`{k}` {v:,.0f}" for k, v in metrics.items()) + ".", ""]
    return _compare(f"## Revocation checks: `store.revocation_cache` 0s vs {s['ttl_s']:g}s",
                    "Same Redis, same token, alternated; ratio = cached / uncached.", s["by_c"], extra)


def _headline(s: dict[str, Any]) -> list[str]:
    out = [f"## Headline: every target at {s['connections']} connections, {s['rounds']} interleaved rounds", "",
           "Each round runs every target once (order rotated); ratios are taken within a round, then the median "
           "(range over rounds in brackets). CPU µs/req = utime + stime of the target's process trees (from /proc) "
           "over the run / requests answered; `nginx-authreq` counts nginx and the gateway it asks. CPU capacity "
           "= 1 / CPU per request.", ""]
    rows = [[n, _med(v["rps"]), _range(v["rps"]), _med(v["p99_ms"], 2), _cpu(v), _range(v["cpu_us"]) if v.get("cpu_us") else "–",
             "" if v["valid"] else "**non-2xx!**"] for n, v in s["summary"].items()]
    out += _table(["target", "RPS", "RPS range", "p99 ms", "CPU µs/req", "CPU range", ""], rows)
    for gw, ratios in s["ratios"].items():
        refs = [k.split("/", 1)[1] for k in ratios if k.startswith("rps/")]
        out += [f"**{gw}** against each reference (same round):", ""]
        out += _table(["reference", "RPS ratio", "CPU per request ratio", "CPU capacity ratio"],
                      [[r, _ratio(ratios[f"rps/{r}"]), _ratio(ratios[f"cpu/{r}"]), _ratio(ratios[f"capacity/{r}"])]
                       for r in refs])
    return out


def _profile(s: dict[str, Any]) -> list[str]:
    if "by_target" not in s:  # a results.json from before the per-variant profiles
        return _profile_one("gateway", s)
    return [line for name, one in s["by_target"].items() for line in _profile_one(name, one)]


def _profile_one(name: str, s: dict[str, Any]) -> list[str]:
    acts = sorted(s["activities"].items(), key=lambda kv: -kv[1])
    out = [f"## Profile of {name}: where its time goes ({s['connections']} connections, py-spy)", "",
           f"{s['samples']:,} busy samples over {s['seconds']:.0f}s while serving {s['rps_while_sampling']:,.0f} rps "
           f"(sampling steals CPU: compare shares, not RPS). Collapsed stacks: `{s['raw_file']}` "
           "(open in speedscope or flamegraph.pl). Each sample is attributed to the innermost "
           "frame that belongs to an activity, so the shares add up to 100%.", "",
           *_table(["activity", "% of busy samples"], [[k, f"{v:.1f}"] for k, v in acts])]
    if s.get("inclusive"):
        out += ["Counted inclusively (a sample counts for every listed frame on its stack):", "",
                *_table(["span", "% of busy samples"], [[k, f"{v:.1f}"] for k, v in s["inclusive"].items()])]
    return out + _table(["function (self time)", "%"], [[f"`{r['function']}`", f"{r['pct']:.1f}"]
                                                        for r in s["self_top"]])


def verdicts(res: dict[str, Any]) -> list[list[str]]:
    """The issue's targets, each with the measured figure and whether it is met."""
    sc = res["scenarios"]
    rows: list[list[str]] = []

    def add(what: str, value: float | None, ok: bool | None, fmt: str = "{:.2f}x") -> None:
        shown = "–" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)
        rows.append([what, shown, "–" if ok is None else ("met" if ok else "**not met**")])

    head = sc.get("headline", {})
    lat_added = sc.get("latency", {}).get("added", {})
    for gw, ratios in head.get("ratios", {}).items():
        def med(key: str, ratios: dict = ratios) -> float | None:
            r = ratios.get(key)
            return r["median"] if r and r.get("n") else None
        for what, key, goal, better in (
                ("CPU capacity {gw}/naive ≥ 3", "capacity/naive", 3.0, "ge"),
                ("RPS {gw}/direct at {c} conns ≥ 0.5", "rps/direct", 0.5, "ge"),
                ("CPU per request {gw}/haproxy jwt_verify ≤ 2", "cpu/haproxy", 2.0, "le")):
            v = med(key)
            if v is not None:
                add(what.format(gw=gw, c=head["connections"]), v, v >= goal if better == "ge" else v <= goal)
        lat = lat_added.get(f"{gw}-direct")
        if lat:
            v = lat["p99_ms"]["median"]
            add(f"added p99 {gw} at 64 conns, ~400 req/s < 2 ms", v, v < 2, "{:.2f} ms")
    st = sc.get("steady", {}) if not head.get("ratios") else {}  # the headline judges these when it ran
    for ref, goal, op in (("direct", 0.5, "≥"), ("naive", 1.3, "≥")):
        for c in (64, 256):
            try:
                v = _get(st["ratios"][f"gateway/{ref}"], c)["median"]
            except (KeyError, TypeError):
                continue
            add(f"RPS gateway/{ref} at {c} conns {op} {goal}", v, v >= goal)
    lat = lat_added.get("gateway-direct") if not head.get("ratios") else None
    if lat:
        v = lat["p99_ms"]["median"]
        add("added p99 at 64 conns, below saturation < 2 ms", v, v < 2, "{:.2f} ms")
    try:
        v = _get(sc["steady"]["added_latency"], 64)["p99_ms"]["median"]
        add("added p99 at 64 conns, saturated (closed loop; informative)", v, None, "{:.2f} ms")
    except (KeyError, TypeError):
        pass
    for c, blk in sc.get("routes", {}).get("by_c", {}).items():
        v = blk["ratio"]["median"]
        add(f"RPS 10k routes / 20 routes at {c} conns ≈ 1 (≥ 0.9)", v, v >= 0.9)
    fam = sc.get("families", {}).get("access")
    if fam:
        v = fam["ratio"]["median"]
        add("RPS 1M families / near-empty ≈ 1 (≥ 0.9)", v, v >= 0.9)
    for n, r in sc.get("flood", {}).get("ratio_vs_valid", {}).items():
        if n not in ("public route (auth: none)",):
            add(f"rejection cheaper than acceptance: {n} RPS / valid RPS > 1", r["median"], r["median"] > 1)
    gw = sc.get("stream", {}).get("runs", {}).get("gateway")
    if gw:
        add("streamed upload: gateway RSS growth (flat: < 32 MiB)", gw["rss_growth_mib"],
            gw["rss_growth_mib"] < 32 and gw["ok"], "{:.1f} MiB")
    return rows


def _load(res: dict[str, Any]) -> str:
    """Load averages at start and end: how busy the shared machine was besides the benchmark."""
    start, end = res["environment"].get("loadavg"), res.get("loadavg_end")
    if not start:
        return ""
    return f" · load average {start[0]:.1f} at start" + (f", {end[0]:.1f} at end" if end else "")


def markdown(res: dict[str, Any]) -> str:
    env = res["environment"]
    out = ["# Gateway benchmark", "",
           f"{env['date']} · {env['cpus']} CPUs · Python {env['python']} · {env['nginx']} · {env['wrk']} · "
           f"commit {env['commit']} · `{' '.join(['python -m bench.run', *env['argv']])}` · "
           f"{res.get('elapsed_s', 0):.0f}s" + _load(res), "",
           "Absolute numbers on a shared 2-core machine (wrk, upstream and proxy share the cores) are noise; "
           "the ratios measured in the same round are the figure.", ""]
    rows = verdicts(res)
    if rows:  # noqa: SIM102
        out += ["## Issue targets (one gateway worker)", "", *_table(["target", "measured", "verdict"], rows)]
    render = {"headline": _headline, "steady": _steady, "latency": _latency, "refresh": _refresh, "routes": _routes,
              "families": _families, "stream": _stream, "flood": _flood, "workers": _workers,
              "profile": _profile, "revcache": _revcache}
    for name, data in res["scenarios"].items():
        if "error" in data:
            out += [f"## {name}: FAILED", "", "```", data["error"], "```", ""]
        elif "skipped" in data:
            out += [f"## {name}: skipped", "", data["skipped"], ""]
        else:
            out += render[name](data)
    if res.get("gateway_peak_rss_mib") is not None:
        out += [f"Gateway (main instance) peak RSS over the whole run: {res['gateway_peak_rss_mib']:.1f} MiB", ""]
    return "\n".join(out)


def plot(res: dict[str, Any], path: Path) -> None:
    """RPS, p99 and CPU time per request against concurrency, one line per target.

    Log scales: the targets differ by an order of magnitude. Hollow markers
    flag runs that got non-2xx answers. The headline ratios are in the
    Markdown report (``_headline``).
    """
    steady = res["scenarios"].get("steady")
    if not steady or "summary" not in steady:
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator, ScalarFormatter

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    ax1, ax2, ax3 = axes
    cs_all: list[int] = []
    for name, byc in steady["summary"].items():
        cs = [int(c) for c in byc]
        cs_all = sorted(set(cs_all) | set(cs))
        rps = list(byc.values())
        med = [v["rps"]["median"] for v in rps]
        err = [[m - v["rps"]["min"] for m, v in zip(med, rps, strict=False)], [v["rps"]["max"] - m for m, v in zip(med, rps, strict=False)]]
        line = ax1.errorbar(cs, med, yerr=err, marker="o", capsize=3, label=name)
        color = line[0].get_color()
        ax2.plot(cs, [v["p99_ms"]["median"] for v in rps], marker="o", color=color, label=name)
        bad = [(c, m) for c, m, v in zip(cs, med, rps, strict=False) if not v["valid"]]
        if bad:
            ax1.scatter(*zip(*bad, strict=False), s=140, facecolors="none", edgecolors="black", zorder=5,
                        label=f"{name}: non-2xx")
        cpu = [v["cpu_us"]["median"] if v.get("cpu_us", {}).get("n") else float("nan") for v in rps]
        ax3.plot(cs, cpu, marker="o", color=color, label=name)
    titles = (("Throughput", "requests/s (median, min–max)"), ("p99 latency (closed loop)", "ms"),
              ("CPU time per request (process tree, /proc)", "µs (median)"))
    for ax, (title, ylabel) in zip(axes, titles, strict=False):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(FixedLocator(cs_all))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_xlabel("concurrent connections")
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    ax3.yaxis.set_major_formatter(ScalarFormatter())
    ax3.yaxis.set_minor_formatter(NullFormatter())
    env = res["environment"]
    fig.suptitle(f"GET /api with a valid token · {env['cpus']} CPUs shared by wrk, upstream and target · {env['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    src = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results" / "results.json")
    data = json.loads(src.read_text())
    (src.parent / "results.md").write_text(markdown(data))
    plot(data, src.parent / "bench.png")
    print(markdown(data))
