"""sshd on 127.0.0.1 and a one-node Slurm (munge, slurmctld, slurmd), for the launcher tests.

Each daemon runs in the foreground as a child of the test process, with every
file it needs (keys, configuration, state, logs) in a directory of the test's
own; leaving the context manager stops it. Nothing of the machine's own
configuration (``/etc/ssh``, ``/etc/slurm``, ``/etc/munge``) is read or changed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT = 30


class DaemonError(RuntimeError):
    """A daemon did not start; the message has its log's end."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _log_tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextmanager
def _daemon(argv: list[str], log: Path, ready: Callable[[], bool]) -> Iterator[subprocess.Popen]:
    """Run ``argv`` (a daemon told to stay in the foreground) until the block ends."""
    with open(log.with_suffix(".out"), "wb") as output:
        process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                raise DaemonError(
                    f"{argv[0]} did not start (exit code {process.poll()}):\n"
                    f"{_log_tail(log)}\n{_log_tail(log.with_suffix('.out'))}"
                )
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class SSHServer:
    """How to reach the test's sshd: ``ssh -F client_config host``."""

    host: str
    client_config: Path

    def run(self, command: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ssh", "-F", str(self.client_config), self.host, command],
            capture_output=True,
            text=True,
            timeout=20,
        )


@contextmanager
def sshd(directory: Path) -> Iterator[SSHServer]:
    """An sshd on 127.0.0.1 that lets this user in with a key made for it."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("host_key", "user_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / name)],
            check=True,
        )
    authorized = directory / "authorized_keys"
    authorized.write_text((directory / "user_key.pub").read_text())
    authorized.chmod(0o600)
    port = free_port()
    server_config = directory / "sshd_config"
    server_config.write_text(
        f"ListenAddress 127.0.0.1\n"
        f"Port {port}\n"
        f"HostKey {directory / 'host_key'}\n"
        f"AuthorizedKeysFile {authorized}\n"
        f"PidFile {directory / 'sshd.pid'}\n"
        "PermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UsePAM no\n"
        # scp speaks SFTP (OpenSSH 9).
        "Subsystem sftp internal-sftp\n"
        # The test's directory is not owned the way sshd wants ~/.ssh to be.
        "StrictModes no\n"
    )
    host = "akernel-ssh-test"
    client_config = directory / "ssh_config"
    client_config.write_text(
        f"Host {host}\n"
        "  HostName 127.0.0.1\n"
        f"  Port {port}\n"
        f"  User {os.environ.get('USER') or _user_name()}\n"
        f"  IdentityFile {directory / 'user_key'}\n"
        "  IdentitiesOnly yes\n"
        "  StrictHostKeyChecking no\n"
        "  UserKnownHostsFile /dev/null\n"
        "  BatchMode yes\n"
        "  LogLevel ERROR\n"
    )
    server = SSHServer(host, client_config)
    # sshd's privilege separation directory (Debian's service makes it at boot).
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    log = directory / "sshd.log"
    argv = ["/usr/sbin/sshd", "-D", "-f", str(server_config), "-E", str(log)]

    def accepts_us() -> bool:
        return server.run("true").returncode == 0

    with _daemon(argv, log, accepts_us):
        yield server


def _user_name() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


@dataclass
class SlurmCluster:
    """A one-node Slurm; its commands find it through ``SLURM_CONF=config``."""

    config: Path
    node: str

    def command(self, *argv: str) -> str:
        return subprocess.run(
            argv,
            env={**os.environ, "SLURM_CONF": str(self.config)},
            capture_output=True,
            text=True,
            check=True,
            timeout=20,
        ).stdout

    def jobs(self, settle: float = 30) -> list[str]:
        """The jobs Slurm knows of that have not ended, once those that are
        completing have had ``settle`` seconds to end."""
        deadline = time.monotonic() + settle
        while True:
            jobs = self.command("squeue", "--noheader", "--format=%i %j %T").splitlines()
            if not jobs or time.monotonic() > deadline:
                return jobs
            time.sleep(0.5)


@contextmanager
def slurm(directory: Path, cpus: int = 8) -> Iterator[SlurmCluster]:
    """munged, slurmctld and slurmd for one node of ``cpus`` CPUs (more than the
    machine has, so that a job may have an engine per CPU), all run as this user."""
    directory.mkdir(parents=True, exist_ok=True)
    munge = directory / "munge"
    munge.mkdir(mode=0o700, exist_ok=True)
    key = munge / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    munge_socket = munge / "munge.socket"
    node = socket.gethostname().split(".")[0]
    for name in ("state", "spool"):
        (directory / name).mkdir(exist_ok=True)
    config = directory / "slurm.conf"
    config.write_text(
        "ClusterName=akernel-test\n"
        f"SlurmctldHost={node}(127.0.0.1)\n"
        f"SlurmUser={_user_name()}\n"
        f"SlurmctldPort={free_port()}\n"
        f"SlurmdPort={free_port()}\n"
        "AuthType=auth/munge\n"
        "CredType=cred/munge\n"
        f"AuthInfo=socket={munge_socket}\n"
        f"StateSaveLocation={directory / 'state'}\n"
        f"SlurmdSpoolDir={directory / 'spool'}\n"
        f"SlurmctldPidFile={directory / 'slurmctld.pid'}\n"
        f"SlurmdPidFile={directory / 'slurmd.pid'}\n"
        f"SlurmctldLogFile={directory / 'slurmctld.log'}\n"
        f"SlurmdLogFile={directory / 'slurmd.log'}\n"
        # No cgroups: processes are tracked by their parents, as in a container.
        "ProctrackType=proctrack/linuxproc\n"
        "TaskPlugin=task/none\n"
        "JobAcctGatherType=jobacct_gather/none\n"
        "AccountingStorageType=accounting_storage/none\n"
        "SchedulerType=sched/backfill\n"
        "SelectType=select/cons_tres\n"
        "SelectTypeParameters=CR_CPU\n"
        # The node has the CPUs this file says, whatever the machine has.
        "SlurmdParameters=config_overrides\n"
        "ReturnToService=2\n"
        "MpiDefault=none\n"
        f"NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN\n"
        f"PartitionName=test Nodes={node} Default=YES MaxTime=INFINITE State=UP\n"
    )
    cluster = SlurmCluster(config, node)

    def node_idle() -> bool:
        try:
            states = cluster.command("sinfo", "--noheader", "--format=%T")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            return False
        return states.strip() == "idle"

    with ExitStack() as stack:
        stack.enter_context(
            _daemon(
                [
                    "munged", "--foreground", "--force",
                    f"--socket={munge_socket}",
                    f"--key-file={key}",
                    f"--log-file={munge / 'munged.log'}",
                    f"--pid-file={munge / 'munged.pid'}",
                    f"--seed-file={munge / 'munged.seed'}",
                ],
                munge / "munged.log",
                munge_socket.exists,
            )
        )  # fmt: skip
        stack.enter_context(
            _daemon(
                ["slurmctld", "-D", "-f", str(config)],
                directory / "slurmctld.log",
                lambda: (directory / "slurmctld.pid").exists(),
            )
        )
        stack.enter_context(
            _daemon(
                ["slurmd", "-D", "-f", str(config), "-N", node],
                directory / "slurmd.log",
                node_idle,
            )
        )
        yield cluster


__all__ = ["DaemonError", "SSHServer", "SlurmCluster", "slurm", "sshd"]
