"""Processes a benchmark starts on 127.0.0.1: free ports, waiting for one to listen, CPU time read
from /proc, and a bounded stop. Shared by scripts/bench and bench/peers.py."""
import os
import signal
import socket
import subprocess
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0, alive=lambda: True):
    """Whether something listens on `port` within `timeout` (gives up early once `alive()` is false)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def proc_cpu_s(pid):
    """CPU seconds (user + system) of a live process so far, to a clock tick."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def stop(proc, timeout=10.0):
    """SIGTERM, then SIGKILL after `timeout`; nothing if it has already ended."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
