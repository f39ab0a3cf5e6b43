"""ContainerAdapter on the real Docker engine: lifecycle, faults, hardening, cleanup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from _images import REFERENCE_IMAGE, ROOT

from conformance.adapters.base import AdapterError, PowerLossUnsupported, RequestTimeout
from conformance.adapters.container import (
    DEFAULT_USER,
    ContainerAdapter,
    ImageNotFound,
    list_run,
    reap_orphans,
)
from conformance.leftovers import owner_of

pytestmark = pytest.mark.container

PUT_A = {"kind": "raw", "ts": 1, "ops": [{"op": "put", "key": "a", "value": "1"}]}
PUT_B = {"kind": "raw", "ts": 2, "ops": [{"op": "put", "key": "b", "value": "2"}]}

# A node that is not the reference, for a root-user image with no /data and no labels (the
# base image): it answers hello with who it runs as and whether /data is writable, and has
# ops that misbehave on purpose.
FAKE_NODE = textwrap.dedent("""
    import json, os, socket, sys, time
    try:
        with open("/data/probe", "w") as f:
            f.write("x")
        writable = "yes"
    except OSError as exc:
        writable = str(exc)
    srv = socket.create_server(("0.0.0.0", 7070))
    print("fake node listening", file=sys.stderr, flush=True)
    while True:
        conn, _ = srv.accept()
        rw = conn.makefile("rw")
        for line in rw:
            req = json.loads(line)
            if req["op"] == "hello":
                impl = {"name": "fake", "uid": str(os.getuid()), "data": writable}
                res = {"version": 1, "implementation": impl, "capabilities": [],
                       "entry_kinds": ["raw"]}
                rw.write(json.dumps({"id": req["id"], "ok": True, "result": res}) + "\\n")
            elif req["op"] == "hang":
                time.sleep(3600)
            elif req["op"] == "garbage":
                rw.write("this is not json\\n")
            rw.flush()
""")


def _gone(client: Any, kind: str, name: str) -> bool:
    import docker.errors

    try:
        getattr(client, kind).get(name)
    except docker.errors.NotFound:
        return True
    return False


@pytest.mark.parametrize("spares", ["auto", "off"])
def test_crash_and_restart_keep_the_volume(images: dict[str, str], spares: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A restart is a new process on the same volume: `docker start` of the same container,
    or, for a node that said prestart (the reference does), a new container of the image
    made ahead of need on the same volume (CONFORMANCE_SPARES=off: always the former)."""
    monkeypatch.setenv("CONFORMANCE_SPARES", spares)
    with ContainerAdapter(REFERENCE_IMAGE, name=f"lifecycle-{spares}", use_layer=False) as a:
        a.start("synced")
        assert a.container is not None
        cid, volume = a.container.id, a.volume_name
        assert a.request("open").reply is not None
        assert a.request("apply", index=1, entry=PUT_A).reply == {
            "id": 3, "ok": True, "result": {"result": "ok"}}
        a.crash()
        assert not a.alive()
        a.container.reload()
        assert a.container.status == "exited"
        assert a.container.attrs["State"]["ExitCode"] == 137  # SIGKILL
        with pytest.raises(AdapterError, match="not running"):
            a.request("get", key="a")

        killed = a.container
        a.start("synced")  # a new process on the same volume, its address re-read
        assert a.volume_name == volume and a.alive()
        if spares == "off":  # docker start of the same container
            assert a.container.id == cid
        else:  # the container made ahead of need, on the same volume
            assert a.container.id != cid
            assert any(m["Name"] == volume for m in a.container.attrs["Mounts"])
            killed.reload()
            assert killed.status == "exited"  # the previous lifetime stays dead
        opened = a.request("open").reply
        assert opened is not None and opened["result"]["have"] == 1
        assert a.request("get", key="a").reply["result"] == {"value": "1"}  # type: ignore[index]


def test_a_crash_failpoint_is_the_node_dying(images: dict[str, str]) -> None:
    with ContainerAdapter(REFERENCE_IMAGE) as a:
        a.start("synced")
        a.request("open")
        a.request("failpoint", name="after_batch_commit", action="crash")
        ex = a.request("apply", index=1, entry=PUT_A)
        assert ex.reply is None  # no reply: the node died with the request in flight
        assert not a.alive()
        a.start("synced")
        opened = a.request("open").reply
        assert opened is not None and opened["result"]["have"] == 1  # committed before the crash
        assert "simulated crash at failpoint 'after_batch_commit'" in a.logs()


def test_published_mode_rereads_the_host_port(images: dict[str, str]) -> None:
    ports = set()
    with ContainerAdapter(REFERENCE_IMAGE, network="published") as a:
        for i in range(3):
            a.start("synced")
            assert a.container is not None and a.address is not None
            binding = a.container.attrs["NetworkSettings"]["Ports"]["7070/tcp"][0]
            assert a.address[1] == int(binding["HostPort"])  # what the engine maps now
            assert binding["HostIp"] == "127.0.0.1"  # never on every interface
            ports.add(a.address[1])
            a.request("open")
            a.request("apply", index=i + 1, entry=PUT_A)
            a.crash()
    # (the engine usually hands out a new port on each start; the test does not insist)
    print(f"host ports over 3 starts: {sorted(ports)}")


@pytest.mark.parametrize("network", ["none", "internal"])
def test_hardening(images: dict[str, str], network: str) -> None:
    with ContainerAdapter(REFERENCE_IMAGE, network=network) as a:  # type: ignore[arg-type]
        a.start("synced")
        assert a.container is not None
        host = a.container.attrs["HostConfig"]
        assert host["ReadonlyRootfs"] is True
        assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
        assert "no-new-privileges:true" in host["SecurityOpt"]
        assert host["Memory"] == 512 * 1024 * 1024 and host["MemorySwap"] == host["Memory"]
        assert host["PidsLimit"] == 256
        assert host["Privileged"] is False
        assert "/tmp" in host["Tmpfs"] and "noexec" in host["Tmpfs"]["/tmp"]
        assert not host["PortBindings"]  # nothing published on the host
        assert a.container.attrs["Config"]["User"] not in ("", "root", "0")
        if network == "none":  # loopback only; the harness connected from inside
            assert host["NetworkMode"] == "none" and a.network_name is None
            assert a.address == ("127.0.0.1", 7070)
        else:
            _internal_network_isolates(a)
        probe = textwrap.dedent("""
            import json, os, socket
            out = {"uid": os.getuid()}
            for name, addr in [("internet", ("1.1.1.1", 443)), ("dns_server", ("8.8.8.8", 53))]:
                s = socket.socket(); s.settimeout(2)
                try:
                    s.connect(addr); out[name] = "connected"
                except OSError as exc:
                    out[name] = type(exc).__name__
                s.close()
            try:
                socket.getaddrinfo("deb.debian.org", 80); out["dns"] = "resolved"
            except OSError as exc:
                out["dns"] = type(exc).__name__
            for path in ("/probe", "/data/probe", "/tmp/probe"):
                try:
                    open(path, "w").close(); out[path] = "writable"
                except OSError as exc:
                    out[path] = type(exc).__name__
            out["caps"] = [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff")]
            out["no_new_privs"] = [l.split()[1] for l in open("/proc/self/status")
                                   if l.startswith("NoNewPrivs")]
            print(json.dumps(out))
        """)
        res = a.container.exec_run(["python3", "-c", probe])
        out = json.loads(res.output.decode().strip().splitlines()[-1])
        assert out["uid"] != 0
        assert out["internet"] != "connected" and out["dns_server"] != "connected"
        assert out["dns"] != "resolved"
        assert out["/probe"] == "OSError"  # read-only root filesystem (EROFS)
        assert out["/data/probe"] == "writable" and out["/tmp/probe"] == "writable"
        assert out["caps"] == ["0000000000000000"] and out["no_new_privs"] == ["1"]


def _internal_network_isolates(a: ContainerAdapter) -> None:
    """The run's internal network: no route out, and no traffic between its containers
    (icc off), checked from a second node's container on the same network."""
    import docker

    assert a.network_name is not None and a.address is not None and a.container is not None
    client = docker.from_env()
    try:
        net = client.networks.get(a.network_name)
        assert net.attrs["Internal"] is True
        assert net.attrs["Options"]["com.docker.network.bridge.enable_icc"] == "false"
    finally:
        client.close()
    with ContainerAdapter(REFERENCE_IMAGE, network="internal", name="neighbour",
                          use_layer=False) as b:
        b.start("synced")
        assert b.network_name == a.network_name and b.container is not None
        probe = ("import socket; s = socket.socket(); s.settimeout(2)\n"
                 f"try:\n    s.connect(({a.address[0]!r}, 7070)); print('connected')\n"
                 "except OSError as exc:\n    print(type(exc).__name__)")
        res = b.container.exec_run(["python3", "-c", probe])
        assert res.output.decode().strip() != "connected"  # not the node next door
        assert a.request("open").reply is not None  # while the harness still reaches it


@pytest.mark.parametrize("use_layer", [False, True], ids=["volume", "crashfs"])
def test_a_root_image_runs_as_a_non_root_user_with_a_writable_volume(
        images: dict[str, str], use_layer: bool) -> None:
    with ContainerAdapter(images["base"], command=["python3", "-c", FAKE_NODE],
                          use_layer=use_layer) as a:
        hello = a.start("synced")
        assert hello.implementation["uid"] == DEFAULT_USER.split(":")[0]
        assert hello.implementation["data"] == "yes"
        assert not hello.capabilities  # a foreign image: no reference switches are passed


def test_request_timeout_kills_the_container(images: dict[str, str]) -> None:
    with ContainerAdapter(images["base"], command=["python3", "-c", FAKE_NODE],
                          timeout=1.0) as a:
        a.start("synced")
        t0 = time.monotonic()
        with pytest.raises(RequestTimeout, match="within the 1 s timeout"):
            a.request("hang")
        assert time.monotonic() - t0 < 10
        assert not a.alive()
        assert a.container is not None
        a.container.reload()
        assert a.container.status == "exited"
        assert "timeout during hang" in a.logs()


def test_protocol_violation_is_reported_with_the_line(images: dict[str, str]) -> None:
    from conformance.adapters.base import ProtocolViolation

    with ContainerAdapter(images["base"], command=["python3", "-c", FAKE_NODE]) as a:
        a.start("synced")
        with pytest.raises(ProtocolViolation, match="this is not json"):
            a.request("garbage")
        assert not a.alive()


def test_a_node_that_exits_at_startup_fails_fast_with_its_log(images: dict[str, str]) -> None:
    t0 = time.monotonic()
    with (ContainerAdapter(REFERENCE_IMAGE, command=["--no-such-flag"], ready_timeout=60) as a,
          pytest.raises(AdapterError, match="exited during startup") as err):
        a.start("synced")
    assert time.monotonic() - t0 < 30
    assert "unrecognized arguments: --no-such-flag" in str(err.value)


def test_a_missing_image_is_a_clear_error(engine: None) -> None:
    with pytest.raises(ImageNotFound, match="build it first"):
        ContainerAdapter(f"applied-index-conformance/no-such-image:{uuid.uuid4().hex[:8]}")


def _crashfs_mounts() -> list[str]:
    with open("/proc/mounts") as f:
        return [line.split()[1] for line in f if " fuse.crashfs " in line]


def _crashfs_mounts_of(pid: int) -> list[str]:
    """The crash-filesystem mounts in temp dirs that harness `pid` made (their owner marker,
    conformance/leftovers.py), not those of whatever else runs on the machine meanwhile."""
    out = []
    for mount in _crashfs_mounts():
        owner = owner_of(Path(mount).parent)
        if owner is not None and owner.pid == pid:
            out.append(mount)
    return out


def test_power_loss_drops_what_the_node_did_not_sync(images: dict[str, str]) -> None:
    """/data is the crash-simulating filesystem, the hardening is unchanged, and a power loss
    drops the unsynced batches of a node in unsynced mode, but not a synced pin."""
    with ContainerAdapter(REFERENCE_IMAGE, name="power") as a:
        assert {"power_loss", "crash_points", "sync_accounting"} <= a.fault_capabilities
        assert a.unavailable_faults() == {}
        a.start("unsynced")  # mounts the layer, then creates the container on it
        assert a.layer is not None
        mountpoint = str(a.layer.mountpoint)
        assert a.container is not None and a.volume_name is None
        host = a.container.attrs["HostConfig"]
        assert host["ReadonlyRootfs"] and host["CapDrop"] == ["ALL"]
        assert a.container.attrs["Config"]["User"] not in ("", "root", "0")
        assert a.request("open").reply is not None
        assert a.request("apply", index=1, entry=PUT_A).reply is not None
        pinned = a.request("set_durable_applied_index", index=1).reply
        assert pinned is not None and pinned["ok"]  # synced whatever the mode
        assert a.request("apply", index=2, entry=PUT_B).reply is not None  # not synced
        a.power_loss("drop_all")
        assert not a.alive()
        a.start("unsynced")  # a new process (prestart: a new container) on what survived
        opened = a.request("open").reply
        assert opened is not None and opened["result"]["have"] == 1  # entry 2 is gone
        assert "power loss (drop_all" in a.logs()
        counters = a.sync_counters()
        assert counters is not None and counters["fsyncs"] >= 1
        assert mountpoint in _crashfs_mounts()
    from conformance.adapters.container.lifetimes import settle

    assert settle(120)  # close() removes in the background
    assert mountpoint not in _crashfs_mounts()  # close() unmounted it


def test_a_crash_point_stops_the_container_at_its_fsync(images: dict[str, str]) -> None:
    with ContainerAdapter(REFERENCE_IMAGE, name="crash-point") as a:
        a.start("synced")
        assert a.request("open").reply is not None
        a.arm_crash_point("fsync", 1)
        ex = a.request("apply", index=1, entry=PUT_A)
        assert ex.reply is None  # stopped at the batch's fsync: no reply
        a.start("synced")  # thawed; the batch's write happened, its fsync did not
        assert a.request("open").reply is not None


def test_power_loss_is_unavailable_away_from_the_engine_host(images: dict[str, str]) -> None:
    with ContainerAdapter(REFERENCE_IMAGE, network="published") as a:
        assert "power_loss" not in a.fault_capabilities
        assert "engine's host" in a.unavailable_faults()["power_loss"]
        a.start("synced")
        with pytest.raises(PowerLossUnsupported, match="engine's host"):
            a.power_loss("drop_all")


def test_close_removes_containers_and_volume(images: dict[str, str]) -> None:
    """close() removes every container of the adapter (its lifetimes', and one made ahead
    of need for a next lifetime) and its volume, in the background (settle() waits); the
    run's network is the run's (removed at its end: drain(), or at exit)."""
    import docker
    from conformance.adapters.container.lifetimes import settle

    a = ContainerAdapter(REFERENCE_IMAGE, use_layer=False, network="internal",
                         name="close-removes")
    a.start("synced")
    a.crash()
    a.start("synced")
    assert a.container is not None and a.volume_name and a.network_name
    cids, volume = list(a._res.containers), a.volume_name
    a.close()
    a.close()  # idempotent
    assert settle(120)
    client = docker.from_env()
    try:
        assert all(_gone(client, "containers", cid) for cid in cids)
        assert _gone(client, "volumes", volume)
    finally:
        client.close()
    log = a.logs()  # the log outlives the containers: every lifetime's
    assert log.count("listening on 0.0.0.0:7070") >= 2


def _child_script(body: str) -> str:
    return textwrap.dedent("""
        import sys, time
        from conformance.adapters.container import ContainerAdapter
        a = ContainerAdapter(sys.argv[1], use_layer=False)
        a.start("synced")
        print("READY", flush=True)
    """) + textwrap.dedent(body)


def _default_sigint() -> None:
    """preexec_fn: SIGINT at its default, as a terminal delivers it. Started from a background
    job, the test command inherits SIGINT ignored, and the child would honour that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _spawn(body: str, run_id: str) -> subprocess.Popen[str]:
    env = {**os.environ, "CONFORMANCE_RUN_ID": run_id}
    proc = subprocess.Popen([sys.executable, "-c", _child_script(body), REFERENCE_IMAGE],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "READY"
    return proc


def test_nothing_leaks_after_ctrl_c(images: dict[str, str]) -> None:
    run_id = f"test-sigint-{uuid.uuid4().hex[:8]}"
    proc = _spawn("time.sleep(600)\n", run_id)
    left = list_run(run_id)
    # its node's container (and the next lifetime's, made ahead of need) and its volume
    assert len(left["containers"]) >= 1 and len(left["volumes"]) == 1
    proc.send_signal(signal.SIGINT)  # Ctrl-C: KeyboardInterrupt, then finalizers and atexit
    proc.wait(timeout=60)
    assert list_run(run_id) == {"containers": [], "volumes": [], "networks": []}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_nothing_leaks_after_ctrl_c_during_a_certification(images: dict[str, str],
                                                           signum: int) -> None:
    """Interrupted in the middle of a --jobs 2 run: two cases in flight, containers made
    ahead of need, removals under way; none of it is left (nor a FUSE mount)."""
    run_id = f"test-cli-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "CONFORMANCE_RUN_ID": run_id}
    proc = subprocess.Popen(
        [sys.executable, "-m", "conformance.cli", "run", "suites", "--image", REFERENCE_IMAGE,
         "--jobs", "2", "--out", str(ROOT / "reports" / "container-interrupted")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_default_sigint)
    deadline = time.monotonic() + 60
    while not any(list_run(run_id).values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # somewhere inside a case
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err[-2000:]
    assert "interrupted" in err
    assert list_run(run_id) == {"containers": [], "volumes": [], "networks": []}
    assert _crashfs_mounts_of(proc.pid) == []  # its layers (and spare) are unmounted


def test_orphans_of_a_killed_harness_are_reaped(images: dict[str, str]) -> None:
    run_id = f"test-sigkill-{uuid.uuid4().hex[:8]}"
    proc = _spawn("time.sleep(600)\n", run_id)
    proc.kill()  # SIGKILL: no finalizer, no atexit: the resources stay...
    proc.wait(timeout=30)
    assert list_run(run_id)["containers"]
    reap_orphans()  # ...until the next run, which removes what dead runs left
    assert list_run(run_id) == {"containers": [], "volumes": [], "networks": []}
