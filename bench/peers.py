"""The peers of scripts/bench --peers: what an operator would pick instead of navietakie, measured on
the same machine with the same load shape as our rows (bench_rr's window 1 and fleet load, the
history page), each on a server this module starts on a free 127.0.0.1 port with its data in a
temp dir, stopped by PID (never a system service):

  peer_jetstream      nats-server 2.9 with JetStream, file storage (bench/peer_jetstream.cpp)
  peer_redis_streams  redis-server 7.0, appendonly yes, appendfsync always (bench/peer_redis.cpp)

A send is one durable publish with a unique message id that ends when the server's acknowledgement
and the client's own subscriber's delivery have both arrived (our --until-event shape). Each row has
the keys of ours plus `server_cpu_s` and `cpu_us_per_msg` ({"server": ...}: the server's CPU over
the loaded phase / that phase's messages), `history_page` and `durability`. scripts/bench adds
nothing to them; `ratio_to_raw` comes from the raw relay row it hands to measure().
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import edge_figures  # peak_rss
from procs import free_port, proc_cpu_s, stop, wait_port

TOOLS = {"peer_jetstream": "peer_jetstream", "peer_redis_streams": "peer_redis"}

# What each server has synced when it acknowledges, from its 2.9.10 / 7.0 source (see README
# "Benchmarks", Peers).
DURABILITY = {
    "peer_jetstream": (
        "nats-server 2.9.10 file store: each message is written to its block file (write(2), the page "
        "cache) before the publish ack, and fsynced by a timer every 2 minutes and at an orderly shutdown, "
        "not when a block fills (stream.go sets SyncInterval = 2 min; 2.9 has no setting for it: "
        "sync_interval, with 'always', came in 2.10.0). "
        "A server crash loses nothing acknowledged, a machine crash up to 2 minutes of it."),
    "peer_redis_streams": (
        "redis-server 7.0, appendonly yes, appendfsync always: each event-loop pass writes and fsyncs the "
        "AOF (flushAppendOnlyFile in beforeSleep) before any reply or XREAD BLOCK delivery of that pass "
        "goes out, a group commit like ours; nothing acknowledged is lost on a machine crash."),
}


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def targets(build_dir):
    """The peer tools' CMake targets that this build tree has (their libraries were found)."""
    res = subprocess.run(["cmake", "--build", build_dir, "--target", "help"], capture_output=True, text=True)
    return [t for t in TOOLS.values() if f" {t}" in res.stdout]


def build(build_dir):
    found = targets(build_dir)
    if found:
        subprocess.run(["cmake", "--build", build_dir, f"-j{os.cpu_count()}", "--target", *found], check=True)
    else:
        log("(libnats-dev / libhiredis-dev not found by CMake: no peers)")


class Server:
    """One peer server in its own temp dir, on a free port, stopped by PID."""

    def __init__(self, kind):
        self.kind, self.port = kind, free_port()
        self.dir = tempfile.mkdtemp(prefix=f"navietakie-{kind}-")
        if kind == "peer_jetstream":
            cmd = [shutil.which("nats-server") or "/usr/bin/nats-server", "-js", "-sd", f"{self.dir}/js",
                   "-a", "127.0.0.1", "-p", str(self.port)]
        else:
            cmd = [shutil.which("redis-server") or "/usr/bin/redis-server", "--bind", "127.0.0.1", "--port",
                   str(self.port), "--dir", self.dir, "--appendonly", "yes", "--appendfsync", "always",
                   "--save", "", "--daemonize", "no"]
        self.proc = subprocess.Popen(cmd, stdout=open(f"{self.dir}/server.log", "w"), stderr=subprocess.STDOUT)
        if not wait_port(self.port, timeout=15, alive=lambda: self.proc.poll() is None):
            self.close()
            raise RuntimeError(f"{kind} server did not start")

    def cpu_s(self):
        return proc_cpu_s(self.proc.pid)

    def close(self):
        stop(self.proc, timeout=15)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def start_tool(build_dir, kind, server, *args):
    return subprocess.Popen([f"{build_dir}/bench/{TOOLS[kind]}", "--port", str(server.port), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result_of(proc, timeout=600):
    out, err = proc.communicate(timeout=timeout)
    lines = [l for l in out.splitlines() if l.startswith("{")]
    if not lines:
        raise RuntimeError(f"{proc.args[0]} printed no JSON (exit {proc.returncode}): {err[-1500:]}")
    data = json.loads(lines[-1])
    if data.get("errors"):
        log(f"{os.path.basename(proc.args[0])}: {data['errors']} errors: {err.strip()[-500:]}")
    return data


def run_tool(build_dir, kind, server, *args, timeout=600):
    return result_of(start_tool(build_dir, kind, server, *args), timeout)


def load(build_dir, kind, server, clients, window, count):
    """K clients at once, each its own booking: throughput summed, latency the median of the
    clients' p50s and the worst of their p99s and p99.9s (as scripts/bench's fleet)."""
    procs = [start_tool(build_dir, kind, server, "--count", count, "--window", window, "--booking", f"LOAD{i}")
             for i in range(clients)]
    each = [result_of(p) for p in procs]
    medians = sorted(e["p50_us"] for e in each)
    return {"msgs_per_s": sum(e["msgs_per_s"] for e in each), "p50_us": medians[len(medians) // 2],
            "p99_us": max(e["p99_us"] for e in each), "p999_us": max(e["p999_us"] for e in each),
            "errors": sum(e["errors"] for e in each)}


def history(build_dir, kind, quick):
    """Pages of the newest 50 from booking H0 of a store the size of our history_page's (10^6
    messages; --quick 10^5), H0 holding 10^5 of them, interleaved with the other bookings'."""
    stored = 100_000 if quick else 1_000_000
    bookings = max(1, stored // 100_000)
    with Server(kind) as server:
        filled = run_tool(build_dir, kind, server, "--mode", "fill", "--messages", stored, "--bookings", bookings,
                          timeout=900)
        w1 = run_tool(build_dir, kind, server, "--mode", "history", "--booking", "H0", "--count",
                      500 if quick else 2000, "--window", 1)
        piped = run_tool(build_dir, kind, server, "--mode", "history", "--booking", "H0", "--count",
                         2000 if quick else 10000, "--window", 16)
    return {"pages_per_s": round(piped["msgs_per_s"]), "p50_us": w1["p50_us"], "p99_us": w1["p99_us"],
            "p999_us": w1["p999_us"], "loaded_p50_us": piped["p50_us"], "loaded_p99_us": piped["p99_us"],
            "loaded_p999_us": piped["p999_us"], "store_messages": stored, "booking_messages": stored // bookings,
            "fill_s": filled["fill_s"], "errors": filled["errors"] + w1["errors"] + piped["errors"]}


def measure_one(build_dir, kind, quick, raw):
    clients, window, count = (6, 16, 2000) if quick else (8, 16, 12000)
    with Server(kind) as server:
        w1 = run_tool(build_dir, kind, server, "--count", 1000 if quick else 5000, "--window", 1, "--booking", "W1")
        cpu_before = server.cpu_s()
        loaded = load(build_dir, kind, server, clients, window, count)
        server_cpu_s = server.cpu_s() - cpu_before
        rss = edge_figures.peak_rss(server.proc.pid)
    sent = clients * count
    row = {
        "msgs_per_s": round(loaded["msgs_per_s"]),
        "p50_us": w1["p50_us"], "p99_us": w1["p99_us"], "p999_us": w1["p999_us"],
        "window1_msgs_per_s": round(w1["msgs_per_s"]),
        "loaded_p50_us": loaded["p50_us"], "loaded_p99_us": loaded["p99_us"], "loaded_p999_us": loaded["p999_us"],
        "load": f"{clients} clients x window {window}",
        "server_cpu_s": round(server_cpu_s, 2), "server_peak_rss_mib": rss,
        "cpu_us_per_msg": {"server": round(server_cpu_s * 1e6 / sent, 1)},
        "errors": w1["errors"] + loaded["errors"],
        "history_page": history(build_dir, kind, quick),
        "durability": DURABILITY[kind],
    }
    if raw and raw.get("msgs_per_s"):
        row["ratio_to_raw"] = round(row["msgs_per_s"] / raw["msgs_per_s"], 3)
    return row


def measure(quick, build_dir, raw=None):
    """The peer rows whose tools were built; `raw` is the raw relay row of the same run."""
    rows = {}
    for kind, binary in TOOLS.items():
        if not os.path.exists(f"{build_dir}/bench/{binary}"):
            log(f"(no {binary} in {build_dir}: {kind} skipped; scripts/bench builds it when its library is installed)")
            continue
        log(f"== {kind}")
        rows[kind] = measure_one(build_dir, kind, quick, raw)
    return rows
