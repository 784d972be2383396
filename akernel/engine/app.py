"""``akernel engine`` (and ``python -m akernel.engine``): an ipyparallel engine.

It accepts the command line ipyparallel's launchers give ``ipengine``
(``--profile-dir``, ``--cluster-id``, ``--log-level``, ``--mpi``,
``--InteractiveShell.*`` and other ``--Class.trait`` options), registers with
the controller, and serves it with the same kernel as ``akernel launch``:
execute and apply requests on shell, abort/clear/shutdown on control,
output on IOPub, the heartbeat echoed on its own thread. It exits when the
controller says so, on SIGTERM, or when the controller's heartbeat is gone.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import anyio
import zmq
from IPython.core.profiledir import ProfileDir
from traitlets import Bool, Enum, Float, Integer, Unicode
from traitlets.config import Application, Config

from .._version import __version__
from ..app import log_to_stderr
from ..execution import StartupCode
from ..wire import Session
from .bind import install as install_binder
from .bind import make_binder
from .connect import (
    Connector,
    EngineError,
    connect_engine_sockets,
    load_controller_info,
    register,
    unregister,
)
from .nanny import start_nanny

log = logging.getLogger("akernel")


class EngineApp(Application):
    """Join an ipyparallel controller as an engine."""

    name = "akernel-engine"
    version = __version__
    description = "Start an akernel engine for an ipyparallel controller."

    url_file = Unicode(
        "", help="The controller's engine connection file (default: from the profile)."
    ).tag(config=True)
    profile = Unicode("default", help="IPython profile holding the connection file.").tag(
        config=True
    )
    profile_dir = Unicode("", help="Profile directory (overrides --profile).").tag(config=True)
    cluster_id = Unicode("", help="Cluster id: ipcontroller-CLUSTER-engine.json.").tag(config=True)
    wait_for_url_file = Float(10.0, help="Seconds to wait for the connection file.").tag(
        config=True
    )
    timeout = Float(5.0, help="Seconds to wait for the controller to answer.").tag(config=True)
    max_heartbeat_misses = Integer(
        50, help="Heartbeat checks the controller may miss before the engine exits (0: never)."
    ).tag(config=True)
    location = Unicode("", help="The controller's host, to disambiguate its addresses.").tag(
        config=True
    )
    sshserver = Unicode("", help="SSH server to tunnel the connections through.").tag(config=True)
    sshkey = Unicode("", help="SSH private key for the tunnels.").tag(config=True)
    use_mpi = Bool(False, help="Ask for the MPI rank as the engine id (needs mpi4py).").tag(
        config=True
    )
    backend = Enum(["asyncio", "trio"], "asyncio", help="Event loop to run on.").tag(config=True)
    startup_command = Unicode(
        "", help="Code to run before serving (after the profile's start-up files)."
    ).tag(config=True)
    startup_script = Unicode("", help="Script to run before serving.").tag(config=True)
    init_mpi = Unicode(
        # What ipengine 9 runs.
        "from mpi4py import MPI\n"
        "mpi_rank = MPI.COMM_WORLD.Get_rank()\n"
        "mpi_size = MPI.COMM_WORLD.Get_size()\n",
        help="Code run first with --mpi: ``MPI``, ``mpi_rank`` and ``mpi_size`` in the"
        " namespace, as ipengine defines them.",
    ).tag(config=True)
    enable_nanny = Bool(
        True,
        help="Start ipyparallel's nanny, as ipengine does: it signals the engine from outside"
        " (Client.send_signal, even SIGKILL) and tells the controller at once when the"
        " engine ends. Not used with SSH tunnels, which it cannot open.",
    ).tag(config=True)

    aliases = {
        "file": "EngineApp.url_file",
        "profile": "EngineApp.profile",
        "profile-dir": "EngineApp.profile_dir",
        "cluster-id": "EngineApp.cluster_id",
        "timeout": "EngineApp.timeout",
        "location": "EngineApp.location",
        "ssh": "EngineApp.sshserver",
        "sshkey": "EngineApp.sshkey",
        "backend": "EngineApp.backend",
        "c": "EngineApp.startup_command",
        "s": "EngineApp.startup_script",
        "log-level": "Application.log_level",
        "work-dir": "EngineApp.work_dir",
    }
    flags = {
        "mpi": ({"EngineApp": {"use_mpi": True}}, "Use the MPI rank as the engine id."),
        "debug": ({"Application": {"log_level": logging.DEBUG}}, "Log at DEBUG level."),
    }
    work_dir = Unicode("", help="Directory to run in.").tag(config=True)

    def initialize(self, argv: list[str] | None = None) -> None:
        # ipyparallel's launchers pass these through the environment.
        if os.environ.get("IPP_CLUSTER_ID"):
            self.cluster_id = os.environ["IPP_CLUSTER_ID"]
        if os.environ.get("IPP_PROFILE_DIR"):
            self.profile_dir = os.environ["IPP_PROFILE_DIR"]
        super().initialize(argv)
        # The profile's ipengine_config.py, as ipengine reads it; ipengine's
        # options (c.IPEngine.*) are ours; the command line still wins.
        profile = self._profile_path()
        if (profile / "ipengine_config.py").is_file():
            self.load_config_file("ipengine_config", path=[str(profile)])
        ours = set(self.class_trait_names(config=True))
        shared = {k: v for k, v in self.config.get("IPEngine", {}).items() if k in ours}
        if shared:
            self.update_config(Config({"EngineApp": {**shared, **self.config.EngineApp}}))
        super().initialize(argv)
        log_to_stderr("akernel-engine", self.log_level)

    def connection_file(self) -> str:
        if self.url_file:
            return self.url_file
        name = f"ipcontroller-{self.cluster_id}-engine.json" if self.cluster_id else None
        return str(self._profile_path() / "security" / (name or "ipcontroller-engine.json"))

    def _profile_path(self) -> Path:
        if self.profile_dir:
            return Path(self.profile_dir)
        from IPython.paths import get_ipython_dir

        return Path(get_ipython_dir()) / f"profile_{self.profile}"

    def start(self) -> None:
        from ..execution import EngineIdentity
        from ..kernel import Kernel
        from ..transport import ConnectionInfo

        # A fatal signal prints every thread's Python stack to the engine's
        # log (its stderr): the controller only learns that the engine died.
        # A copy of the descriptor: the kernel redirects fd 2 to the client.
        faulthandler.enable(file=os.dup(sys.stderr.fileno()), all_threads=True)
        if self.work_dir:
            os.chdir(os.path.expanduser(self.work_dir))
        sys.path.insert(0, "")
        env_info = os.environ.get("IPP_CONNECTION_INFO", "")
        info = load_controller_info(env_info, self.connection_file(), self.wait_for_url_file)
        connector = Connector(
            info, location=self.location, sshserver=self.sshserver or info.ssh, sshkey=self.sshkey
        )
        if info.curve_serverkey:
            # ipyparallel's controller then turns HMAC signing off (an empty key).
            log.info("Using CurveZMQ with the controller")
        session = Session(info.key.encode(), info.signature_scheme)
        context = zmq.Context()
        uuid = str(uuid4())
        registrar, engine_id, hb_period = register(
            context, connector, session, uuid, self._requested_id(), self.timeout
        )
        log.info("Completed registration with id %d", engine_id)  # as ipengine logs it
        nanny = None
        if self.enable_nanny and not connector.sshserver:
            nanny = start_nanny(
                connector,
                engine_id=engine_id,
                uuid=uuid,
                key=info.key,
                signature_scheme=info.signature_scheme,
            )
        sockets = connect_engine_sockets(
            context, connector, uuid, engine_id, nanny_url=nanny.url if nanny else ""
        )
        monitor = HeartbeatMonitor(context, hb_period, self.max_heartbeat_misses)
        # Many engines share a profile: one history database for all of them
        # would be written concurrently. Engines keep history in memory.
        self.config.HistoryManager.hist_file = ":memory:"
        kernel = Kernel(
            ConnectionInfo(key=info.key, signature_scheme=info.signature_scheme),
            sockets,
            backend=self.backend,
            config=self.config,
            engine=EngineIdentity(uuid=uuid, id=engine_id),
            heartbeat_capture=monitor.capture,
            # Nobody is left to get the results of what runs: interrupt it.
            control_duties=(lambda: monitor.watch(lambda: kernel.request_stop(interrupt=True)),),
            parent_pid=0,
            startup=self._startup_code(),
        )
        binder = make_binder(kernel, engine_id=engine_id, curve=bool(info.curve_serverkey))
        uninstall_binder = install_binder(binder)
        try:
            anyio.run(kernel.serve, backend=self.backend)
        finally:
            uninstall_binder()
            if monitor.lost:
                unregister(registrar, session, engine_id)
            registrar.close(linger=1000)
            monitor.close()
            context.term()
            # The nanny is not stopped here: it still relays our last replies
            # (a shutdown_reply) to the controller, and drops what it holds
            # once its pipe closes. It closes when this process exits; the
            # nanny then unregisters us and exits too, as with ipengine.

    def _startup_code(self) -> StartupCode:
        """What ipengine runs once registered: the profile's start-up files,
        ``$PYTHONSTARTUP``, exec_lines/exec_files, then ``-c`` and ``-s``."""
        startup = StartupCode(config=self.config, profile_dir=self._profile())
        if self.use_mpi and self.init_mpi:
            startup.exec_lines = [self.init_mpi, *startup.exec_lines]
        if self.startup_command:
            startup.exec_lines = [*startup.exec_lines, self.startup_command]
        if self.startup_script:
            startup.exec_files = [*startup.exec_files, self.startup_script]
        return startup

    def _profile(self) -> ProfileDir | None:
        path = self._profile_path()
        return ProfileDir.create_profile_dir(str(path)) if path.is_dir() else None

    def _requested_id(self) -> int | None:
        if not self.use_mpi:
            return None
        try:
            from mpi4py import MPI
        except ImportError:
            raise EngineError("--mpi needs mpi4py: pip install mpi4py") from None
        return int(MPI.COMM_WORLD.Get_rank())


class HeartbeatMonitor:
    """Notices when the controller's heartbeat pings stop coming."""

    def __init__(self, context: zmq.Context, period_ms: int, max_misses: int) -> None:
        address = f"inproc://akernel-heartbeat-capture-{id(self)}"
        self.capture = context.socket(zmq.PUSH)  # the echo thread's
        self.capture.bind(address)
        self._pings = context.socket(zmq.PULL)  # the control thread's
        self._pings.connect(address)
        self.check_period = (period_ms + 500) / 1000
        self.max_misses = max_misses
        self.lost = False

    async def watch(self, stop: Any) -> None:
        from ..transport import AsyncSocket

        if self.max_misses <= 0:
            return
        pings = AsyncSocket(self._pings)
        last_ping = time.monotonic()
        misses = 0

        async def receive() -> None:
            nonlocal last_ping
            while True:
                await pings.recv_multipart()
                last_ping = time.monotonic()

        async with anyio.create_task_group() as tg:
            tg.start_soon(receive)
            while True:
                checked = time.monotonic()
                await anyio.sleep(self.check_period)
                if last_ping >= checked:
                    misses = 0
                    continue
                misses += 1
                log.warning("no heartbeat from the controller (%d time(s) in a row)", misses)
                if misses >= self.max_misses:
                    log.critical("the controller's heartbeat is gone: stopping")
                    self.lost = True
                    stop()
                    tg.cancel_scope.cancel()

    def close(self) -> None:
        self._pings.close(linger=0)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``akernel engine`` and ``python -m akernel.engine``."""
    try:
        app = EngineApp.instance()
        app.initialize(argv)
        app.start()
    except EngineError as e:
        print(f"akernel engine: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
