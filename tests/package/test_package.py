#!/usr/bin/python3
"""The .deb as an operator gets it: built by CPack from this build dir, unpacked into a throw-away
root (dpkg-deb -x, never installed on this machine), its postinst run against that root
(DPKG_ROOT), its units checked (systemd-analyze verify, when it works here), and both services
started without systemd as PID 1 by running each unit's ExecStart line with its paths rebased to
the root and free ports: a request round trip over MQTT through each, and the bridge's READY=1 and
STOPPING=1 through a NOTIFY_SOCKET this test binds.

Usage: test_package.py BUILD_DIR
"""
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
import procs  # noqa: E402  (bench/procs.py: free ports, waiting for a port, the bounded stop)
from procs import free_port  # noqa: E402

BUILD = os.path.abspath(sys.argv[1])
failures = []


def check(condition, what):
    print(("ok   " if condition else "FAIL ") + what, flush=True)
    if not condition:
        failures.append(what)
    return condition


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=kw.pop("timeout", 240), **kw)


def wait_port(port, proc, timeout=30.0):
    return procs.wait_port(port, timeout, alive=lambda: proc.poll() is None)


def stop(proc, timeout=20.0):
    procs.stop(proc, timeout)
    return proc.returncode


def unit_value(unit_text, key):
    values = [line.split("=", 1)[1] for line in unit_text.splitlines() if line.startswith(key + "=")]
    return values[-1] if values else None


def rebase(command, root):
    """An ExecStart line with the package's own absolute paths moved under `root`."""
    return [root + word if word.startswith(("/usr/bin/", "/usr/lib/", "/etc/navietakie/", "/var/lib/navietakie"))
            and os.path.exists(root + word) else word for word in command.split()]


def request(port, booking, action, body, client_id):
    """One MQTT v5 request/response with mosquitto_rr; the reply as JSON (None if none came)."""
    result = run(["mosquitto_rr", "-V", "5", "-h", "127.0.0.1", "-p", str(port), "-i", client_id,
                  "-t", f"navietakie/v1/bookings/{booking}/{action}",
                  "-e", f"navietakie/v1/replies/{client_id}/1", "-q", "1", "-m", json.dumps(body), "-W", "20"],
                 timeout=40)
    try:
        return json.loads(result.stdout)
    except ValueError:
        print("mosquitto_rr:", result.returncode, result.stdout, result.stderr)
        return None


def round_trip(port, booking, tag):
    sent = request(port, booking, "send_message", {"sender": "driver", "text": "hello " + tag}, tag + "-a")
    check(bool(sent) and sent.get("ok") is True, f"{tag}: send_message answered ok ({sent})")
    page = request(port, booking, "get_message", {"limit": 10}, tag + "-b")
    texts = [m.get("text") for m in (page or {}).get("messages", [])]
    check(bool(page) and "hello " + tag in texts, f"{tag}: get_message returns the stored message ({texts})")


def main():
    work = tempfile.mkdtemp(prefix="navietakie-package-")
    os.chmod(work, 0o755)  # the services drop to `mosquitto`, which must reach the root below
    started = []
    try:
        # 1. The package, from this build dir (CPack runs its install rules with prefix /usr).
        out = os.path.join(work, "out")
        built = run(["cpack", "-G", "DEB", "--config", os.path.join(BUILD, "CPackConfig.cmake"), "-B", out],
                    cwd=BUILD, timeout=600)
        debs = [f for f in os.listdir(out) if f.endswith(".deb")] if os.path.isdir(out) else []
        if not check(built.returncode == 0 and len(debs) == 1, "cpack builds one .deb"):
            print(built.stdout[-3000:], built.stderr[-3000:])
            return
        deb = os.path.join(out, debs[0])
        info = run(["dpkg-deb", "-f", deb, "Depends"]).stdout
        print("Depends:", info.strip())
        for dep in ("mosquitto", "libpaho-mqttpp3", "liblmdb0", "libjwt", "libsystemd0"):
            check(dep in info, f"Depends names {dep}")

        # 2. Unpacked into a throw-away root, with its maintainer scripts.
        root = os.path.join(work, "root")
        control = os.path.join(work, "control")
        check(run(["dpkg-deb", "-x", deb, root]).returncode == 0, "dpkg-deb -x")
        check(run(["dpkg-deb", "-e", deb, control]).returncode == 0, "dpkg-deb -e")
        os.chmod(root, 0o755)
        for path in ("/usr/bin/navietakie-bridge", "/usr/bin/navietakie-ctl", "/usr/bin/navietakie-sim",
                     "/usr/lib/navietakie/mosquitto_navietakie.so", "/usr/share/navietakie/web/index.html",
                     "/etc/navietakie/mosquitto.conf", "/etc/navietakie/bridge.conf",
                     "/etc/navietakie/mosquitto-bridge.conf", "/lib/systemd/system/navietakie-bridge.service",
                     "/lib/systemd/system/navietakie-mosquitto.service"):
            # /lib is /usr/lib in the package (merged /usr): either spelling.
            check(os.path.exists(root + path) or os.path.exists(root + "/usr" + path), "installs " + path)
        conffiles = open(os.path.join(control, "conffiles")).read().split()
        check(sorted(conffiles) == ["/etc/navietakie/bridge.conf", "/etc/navietakie/mosquitto-bridge.conf",
                                    "/etc/navietakie/mosquitto.conf"], f"configs are conffiles ({conffiles})")
        conf = open(root + "/etc/navietakie/mosquitto.conf").read()
        check("plugin /usr/lib/navietakie/mosquitto_navietakie.so" in conf and
              "plugin_opt_data_dir /var/lib/navietakie" in conf and "http_dir /usr/share/navietakie/web" in conf,
              "mosquitto.conf names the installed plugin, data dir and web app")
        check("\ndata_dir /var/lib/navietakie\n" in open(root + "/etc/navietakie/bridge.conf").read(),
              "bridge.conf names the data dir")

        env = dict(os.environ, DPKG_ROOT=root)
        post = run([os.path.join(control, "postinst"), "configure", ""], env=env)
        check(post.returncode == 0, f"postinst configure ({post.stderr.strip()})")
        data_dir = root + "/var/lib/navietakie"
        check(os.path.isdir(data_dir), "postinst makes the data dir")
        as_root = os.geteuid() == 0
        try:
            mosquitto_uid = pwd.getpwnam("mosquitto").pw_uid
        except KeyError:
            mosquitto_uid = None
        if as_root and mosquitto_uid is not None:
            check(os.stat(data_dir).st_uid == mosquitto_uid, "the data dir belongs to mosquitto")
        check(run([os.path.join(control, "postinst"), "configure", "0.1.0"], env=env).returncode == 0,
              "postinst again (upgrade) succeeds")

        unit_dir = root + "/lib/systemd/system" if os.path.isdir(root + "/lib/systemd/system") \
            else root + "/usr/lib/systemd/system"
        units = {name: open(os.path.join(unit_dir, name)).read()
                 for name in ("navietakie-mosquitto.service", "navietakie-bridge.service")}
        bridge_unit = units["navietakie-bridge.service"]
        check(unit_value(bridge_unit, "Type") == "notify", "the bridge's unit is Type=notify")
        for key, value in (("Restart", "on-failure"), ("ProtectSystem", "strict"),
                           ("ReadWritePaths", "/var/lib/navietakie"), ("NoNewPrivileges", "true"),
                           ("PrivateTmp", "true"), ("ProtectHome", "true")):
            for name, text in units.items():
                check(unit_value(text, key) == value, f"{name}: {key}={value}")

        # 3. systemd-analyze verify, if this machine can run it (it needs no running systemd, but
        # checks that ExecStart's programs exist: on the root, with mosquitto linked in).
        analyze = shutil.which("systemd-analyze")
        if analyze:
            # What the units name from outside the package, copied into the root: the broker,
            # kill (ExecReload), and the targets they hook into.
            unit_rel = unit_dir[len(root):]
            os.makedirs(root + "/usr/sbin", exist_ok=True)
            shutil.copy2("/usr/sbin/mosquitto", root + "/usr/sbin/mosquitto")
            shutil.copy2("/bin/kill", root + "/usr/bin/kill")
            if not os.path.lexists(root + "/bin"):
                os.symlink("usr/bin", root + "/bin")
            system_units = "/usr/lib/systemd/system" if os.path.isdir("/usr/lib/systemd/system") else "/lib/systemd/system"
            for name in os.listdir(system_units):
                if name.endswith(".target") and not os.path.exists(os.path.join(unit_dir, name)):
                    shutil.copy2(os.path.join(system_units, name), unit_dir)
            verified = run([analyze, "verify", "--root=" + root] + [unit_rel + "/" + name for name in units])
            text = (verified.stdout + verified.stderr).strip()
            print("systemd-analyze verify:", verified.returncode, text[-2000:])
            # Any finding about our units (a bad key or value is only a warning, exit code 0).
            check(verified.returncode == 0 and "navietakie" not in text, "systemd-analyze verify finds nothing in the units")
        else:
            print("skip systemd-analyze verify: not installed")

        # 4. Plugin mode: navietakie-mosquitto.service's ExecStart, with a rebased copy of its config.
        mqtt_port, ws_port = free_port(), free_port()
        rebased_conf = conf.replace("/usr/lib/navietakie/", root + "/usr/lib/navietakie/")
        rebased_conf = rebased_conf.replace("/usr/share/navietakie/", root + "/usr/share/navietakie/")
        rebased_conf = rebased_conf.replace("/var/lib/navietakie", data_dir)
        rebased_conf = re.sub(r"^listener 1883$", f"listener {mqtt_port} 127.0.0.1", rebased_conf, flags=re.M)
        rebased_conf = re.sub(r"^listener 9001$", f"listener {ws_port} 127.0.0.1", rebased_conf, flags=re.M)
        if not as_root:
            rebased_conf += f"\nuser {pwd.getpwuid(os.geteuid()).pw_name}\n"
        conf_path = os.path.join(work, "mosquitto.conf")
        with open(conf_path, "w") as f:
            f.write(rebased_conf)
        exec_start = unit_value(units["navietakie-mosquitto.service"], "ExecStart")
        check(exec_start == "/usr/sbin/mosquitto -c /etc/navietakie/mosquitto.conf", f"ExecStart is {exec_start}")
        # The config is the rebased copy; mosquitto is the system's (a Depends, not in the package).
        argv = rebase(exec_start.replace("/etc/navietakie/mosquitto.conf", conf_path), root)
        broker_log = open(os.path.join(work, "plugin.log"), "w")
        broker = subprocess.Popen(argv, stdout=broker_log, stderr=subprocess.STDOUT)
        started.append(broker)
        if check(wait_port(mqtt_port, broker), "Mosquitto with the plugin listens"):
            round_trip(mqtt_port, "PKG1", "plugin")
        stop(broker)
        log = open(os.path.join(work, "plugin.log")).read()
        check("engine_started" in log, "the plugin's engine started from the installed config")
        if as_root and mosquitto_uid is not None:
            owners = {os.stat(os.path.join(data_dir, f)).st_uid for f in os.listdir(data_dir)}
            check(owners == {mosquitto_uid}, "the plugin ran as mosquitto (its store files are mosquitto's)")

        # 5. Bridge mode: navietakie-bridge.service's ExecStart beside a plain Mosquitto, as its
        # User= (when this test can switch), in its WorkingDirectory, with NOTIFY_SOCKET.
        port = free_port()
        plain_conf = os.path.join(work, "plain.conf")
        with open(plain_conf, "w") as f:
            f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\n" + ("" if as_root else
                    f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"))
        plain = subprocess.Popen(["/usr/sbin/mosquitto", "-c", plain_conf], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        started.append(plain)
        check(wait_port(port, plain), "a plain Mosquitto listens")
        exec_start = unit_value(bridge_unit, "ExecStart")
        check(exec_start == "/usr/bin/navietakie-bridge --config /etc/navietakie/bridge.conf",
              f"ExecStart is {exec_start}")
        argv = rebase(exec_start, root) + ["--broker_url", f"tcp://127.0.0.1:{port}", "--data_dir", data_dir,
                                           "--client_id", "navietakie-package-test"]
        if as_root and unit_value(bridge_unit, "User") and shutil.which("setpriv"):
            user = pwd.getpwnam(unit_value(bridge_unit, "User"))
            argv = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"] + argv
        notify_path = os.path.join(work, "notify.sock")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(notify_path)
        os.chmod(notify_path, 0o777)
        notify.settimeout(1.0)
        bridge_log = open(os.path.join(work, "bridge.log"), "w")
        bridge = subprocess.Popen(argv, cwd=data_dir, stdout=bridge_log, stderr=subprocess.STDOUT,
                                  env=dict(os.environ, NOTIFY_SOCKET=notify_path, WATCHDOG_USEC="2000000"))
        started.append(bridge)
        states = []

        def wait_state(word, timeout):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if any(word in s for s in states):
                    return True
                try:
                    states.append(notify.recv(4096).decode())
                except socket.timeout:
                    if bridge.poll() is not None and word != "STOPPING=1":
                        break
            return any(word in s for s in states)

        if check(wait_state("READY=1", 60), "the bridge says READY=1 on NOTIFY_SOCKET"):
            round_trip(port, "PKG2", "bridge")
            check(wait_state("WATCHDOG=1", 10), "the bridge sends WATCHDOG=1 when WATCHDOG_USEC is set")
        bridge.send_signal(signal.SIGTERM)
        check(wait_state("STOPPING=1", 30), "the bridge says STOPPING=1 when stopping")
        check(stop(bridge, 30) == 0, "the bridge exits 0 on SIGTERM")
        print("notifications:", states)
        notify.close()
    finally:
        for proc in started:
            stop(proc)
        for name in ("plugin.log", "bridge.log"):
            path = os.path.join(work, name)
            if failures and os.path.exists(path):
                print(f"--- {name}\n" + open(path).read()[-4000:])
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print(f"{len(failures)} check(s) failed")
        sys.exit(1)


if __name__ == "__main__":
    main()
    if failures:
        sys.exit(1)
    print("all package checks passed")
