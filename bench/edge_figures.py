"""The edge figures of scripts/bench --edge: what a car unit running the embedded default (mosquitto +
plugin, LMDB, full sync) costs in memory, start-up time, idle wake-ups and flash.

Memory is read from /proc/PID/smaps_rollup (RSS, and PSS, which splits shared library pages among the
processes mapping them) and broken down from /proc/PID/smaps by mapping, to show what is the broker's
own and what is ours. Wake-ups are context switches (voluntary + involuntary) per thread from
/proc/PID/task/*/status over an idle window. scripts/bench owns the brokers (its `system` and `tool`).
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

PREFIX = "navietakie/v1"
MESSAGES = 1_000_000
FILL_BOOKINGS = 1000
OVERDUE_CALLS = 1000


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def rollup(pid):
    """RSS and PSS of a live process, MiB."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss"):
                out[key.lower() + "_mib"] = round(int(rest.split()[0]) / 1024, 1)
    return out


def mapping_kind(path, size_kb, start):
    """Who a mapping belongs to, as far as its name and shape tell."""
    name = os.path.basename(path)
    if path == "[heap]":
        return "heap (broker thread's malloc arena: mosquitto and the plugin's broker-thread side)"
    if path == "[stack]":
        return "broker thread stack"
    if path.startswith("["):
        return "kernel ([vdso], [vvar])"
    if name == "mosquitto_navietakie.so":
        return "plugin code and data (mosquitto_navietakie.so)"
    if name == "data.mdb":
        return "LMDB map (data.mdb pages touched)"
    if name == "lock.mdb":
        return "LMDB lock file"
    if name == "mosquitto":
        return "mosquitto binary"
    if ".so" in name:
        lib = name.split(".so")[0]
        return f"library {lib}"
    if not path:
        # glibc's per-thread malloc arenas are 64 MiB-aligned reservations; thread stacks are 8 MiB.
        if start % (64 << 20) == 0:
            return "malloc arenas of other threads (the plugin's engine thread)"
        if size_kb in (8192, 8196):
            return "thread stacks (the plugin's threads)"
        return "other anonymous memory"
    return f"file {name}"


def breakdown(pid, top=14):
    """RSS and PSS (KiB) per mapping kind, largest RSS first."""
    kinds = {}
    kind = None
    size_kb = 0
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and not head[0].endswith(":"):
                start = int(head[0].split("-")[0], 16)
                end = int(head[0].split("-")[1], 16)
                size_kb = (end - start) // 1024
                kind = mapping_kind(head[5] if len(head) > 5 else "", size_kb, start)
                kinds.setdefault(kind, {"rss_kib": 0, "pss_kib": 0})
            elif head[0] in ("Rss:", "Pss:") and kind:
                kinds[kind][head[0][:-1].lower() + "_kib"] += int(head[1])
    ranked = sorted(kinds.items(), key=lambda kv: -kv[1]["rss_kib"])
    return {k: v for k, v in ranked[:top] if v["rss_kib"] > 0}


def peak_rss(pid):
    """The highest RSS the process has had (VmHWM), MiB: start-up included."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


def memory(pid):
    return {**rollup(pid), "peak_rss_mib": peak_rss(pid), "by_mapping": breakdown(pid)}


def context_switches(pid):
    """Thread id -> (name, voluntary + involuntary context switches so far)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            switches = 0
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        switches += int(line.split()[1])
            out[int(tid)] = (name, switches)
        except OSError:
            pass  # a thread that ended meanwhile
    return out


def wakeups(pid, seconds):
    """Wake-ups per second of the broker thread (the process's main thread) and of every other
    thread (the plugin's), over `seconds` of idle."""
    before = context_switches(pid)
    time.sleep(seconds)
    after = context_switches(pid)
    broker = (after[pid][1] - before[pid][1]) / seconds
    others = {f"{name} ({tid})": round((n - before.get(tid, (name, 0))[1]) / seconds, 1)
              for tid, (name, n) in after.items() if tid != pid}
    return {"broker_thread_per_s": round(broker, 1), "plugin_threads_per_s": round(sum(others.values()), 1),
            "plugin_threads": others, "window_s": seconds}


def stripped_size(build):
    plugin = f"{build}/plugin/mosquitto_navietakie.so"
    with tempfile.TemporaryDirectory() as tmp:
        out = f"{tmp}/plugin.so"
        subprocess.run(["strip", "--strip-all", "-o", out, plugin], check=True)
        return {"stripped_kib": round(os.path.getsize(out) / 1024), "unstripped_kib": round(os.path.getsize(plugin) / 1024)}


def idle_clients(s, build, bookings, settle_s):
    """`bookings` bookings of two clients each (driver, passenger: connected, subscribed, declared
    online) that stay idle; returns the broker's memory once they have all connected."""
    sim = subprocess.Popen([f"{build}/sim/navietakie-sim", "--url", s.url(), "--bookings", str(bookings), "--rate",
                            "0.0001", "--duration", str(settle_s + 8), "--calls", "0", "--history-every", "0",
                            "--quiet", "--json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        time.sleep(settle_s)
        out = memory(s.broker.pid)
        # The broker's open sockets: the clients' connections, plus its listener (a sanity check).
        out["broker_sockets"] = sum(1 for fd in os.listdir(f"/proc/{s.broker.pid}/fd")
                                    if os.readlink(f"/proc/{s.broker.pid}/fd/{fd}").startswith("socket:"))
    finally:
        sim.wait(timeout=120)
    return out


def fill(tool, messages, overdue_calls, made):
    """A data dir holding `messages` messages (and overdue ringing calls), written by bench_fill;
    its parent dir is appended to `made` at once, for the caller to remove even if this fails."""
    parent = tempfile.mkdtemp(prefix="navietakie-fill-")
    made.append(parent)
    data = f"{parent}/data"
    os.makedirs(data)
    result = tool("bench/bench_fill", "--dir", data, "--messages", messages, "--bookings", FILL_BOOKINGS,
                  "--overdue-calls", overdue_calls, timeout=1800)
    if result["_exit"] != 0:
        raise RuntimeError(f"bench_fill failed: {result}")
    log(f"   filled {result['messages']} messages, {overdue_calls} overdue calls in {result['fill_s']} s")
    return data


def cold_start(system, data, overdue_calls, runs):
    """Broker start to the first answered get_message (50 messages of a full booking), `runs` times,
    each on a fresh copy of the filled store. With overdue calls, checks afterwards that the last
    of them did end as missed. The page cache is warm (the copy was just written)."""
    times = []
    after = None
    for _ in range(runs):
        with system("plugin", start=False, data_from=data) as s:
            s.configure()
            started = time.monotonic()
            s.launch_broker()
            reply = s.wait_ready(booking="E0", body='{"limit":50}')
            times.append((time.monotonic() - started) * 1000)
            if '"ok":true' not in reply or '"seq":' not in reply:
                raise RuntimeError(f"the first get_message was not answered with messages: {reply[:300]}")
            if overdue_calls:
                deadline = time.monotonic() + 20
                while True:
                    last = s.wait_ready(booking=f"RING{overdue_calls - 1}", body='{"types":["call"]}')
                    if '"missed"' in last:
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the overdue calls were not ended: {last[:300]}")
                    time.sleep(0.1)
            after = memory(s.broker.pid)
    return {"runs": runs, "median_ms": round(statistics.median(times)), "max_ms": round(max(times)),
            "all_ms": [round(t) for t in times], "broker_after": after}


def measure(quick, system, tool, build):
    messages = 100_000 if quick else MESSAGES
    runs = 3 if quick else 7
    out = {"plugin_size": stripped_size(build)}

    log("== edge: Mosquitto alone, idle (the broker's own baseline)")
    with system("none") as s:
        time.sleep(1)
        out["broker_alone_idle"] = memory(s.broker.pid)
        out["broker_alone_wakeups"] = wakeups(s.broker.pid, 10)

    log("== edge: plugin, empty store, idle; then 100 bookings x 2 idle clients")
    with system("plugin") as s:
        time.sleep(1)
        out["empty_idle"] = memory(s.broker.pid)
        out["empty_wakeups"] = wakeups(s.broker.pid, 10)
        out["bookings_100_idle"] = idle_clients(s, build, 100, 8 if quick else 12)

    log(f"== edge: filling stores of {messages} messages (bench_fill)")
    filled = []
    try:
        plain = fill(tool, messages, 0, filled)
        with_calls = fill(tool, messages, OVERDUE_CALLS, filled)
        log(f"== edge: plugin at {messages} messages, idle after one get_message")
        with system("plugin", start=False, data_from=plain) as s:
            s.start()
            s.wait_ready(booking="E0", body='{"limit":50}')
            time.sleep(1)
            out["stored_idle"] = {**memory(s.broker.pid), "messages": messages}
        log(f"== edge: cold start at {messages} messages ({runs} runs each)")
        out["cold_start"] = cold_start(system, plain, 0, runs)
        out["cold_start_overdue_calls"] = {**cold_start(system, with_calls, OVERDUE_CALLS, runs),
                                           "overdue_calls": OVERDUE_CALLS}
        out["messages"] = messages
    finally:
        for parent in filled:
            shutil.rmtree(parent, ignore_errors=True)
    return out


def table(r):
    mib = lambda m: f"{m['rss_mib']} / {m['pss_mib']} MiB (peak RSS {m['peak_rss_mib']} MiB)"
    rows = [
        ("Mosquitto alone, idle: RSS / PSS", mib(r["broker_alone_idle"])),
        ("plugin, empty store, idle: RSS / PSS", mib(r["empty_idle"])),
        ("plugin, 100 bookings x 2 idle clients: RSS / PSS", mib(r["bookings_100_idle"])),
        (f"plugin, {r['messages']} messages, idle: RSS / PSS", mib(r["stored_idle"])),
        (f"cold start at {r['messages']} messages: median / max", f"{r['cold_start']['median_ms']} / "
                                                                  f"{r['cold_start']['max_ms']} ms"),
        (f"... with {OVERDUE_CALLS} overdue ringing calls: median / max",
         f"{r['cold_start_overdue_calls']['median_ms']} / {r['cold_start_overdue_calls']['max_ms']} ms"),
        ("idle wake-ups, Mosquitto alone", f"{r['broker_alone_wakeups']['broker_thread_per_s']}/s"),
        ("idle wake-ups with the plugin: broker thread / plugin threads",
         f"{r['empty_wakeups']['broker_thread_per_s']}/s / {r['empty_wakeups']['plugin_threads_per_s']}/s"),
        ("plugin size, stripped / unstripped", f"{r['plugin_size']['stripped_kib']} / "
                                               f"{r['plugin_size']['unstripped_kib']} KiB"),
    ]
    width = max(len(a) for a, _ in rows)
    lines = [f"{a.ljust(width)}  {b}" for a, b in rows]
    lines.append("")
    lines.append("where the RSS goes, 100 bookings x 2 idle clients (KiB RSS / PSS):")
    for kind, v in r["bookings_100_idle"]["by_mapping"].items():
        lines.append(f"  {str(v['rss_kib']).rjust(6)} / {str(v['pss_kib']).rjust(6)}  {kind}")
    return "\n".join(lines)
