"""ipyparallel's nanny, started for an akernel engine as ``ipengine`` does.

The nanny is a small process of ipyparallel's that sits between the
controller and the engine's control socket. It answers ``signal_request``
by signalling the engine from outside (so even SIGKILL gets its reply), and
tells the controller at once when the engine process ends, however it ends,
instead of leaving that to the heartbeat.
"""

from __future__ import annotations

import logging
import subprocess

from traitlets.config import Config

from .connect import Connector, EngineError

log = logging.getLogger("akernel")


class Nanny:
    """A running nanny: connect the engine's control socket to ``url``.

    It watches the pipe to this process (its stdout): when the pipe closes,
    at our exit, it tells the controller that the engine is gone and exits.
    """

    def __init__(self, url: str, process: subprocess.Popen[bytes]) -> None:
        self.url = url
        self.process = process


def start_nanny(
    connector: Connector, *, engine_id: int, uuid: str, key: str, signature_scheme: str
) -> Nanny:
    """Start ipyparallel's nanny for this engine."""
    from ipyparallel.engine.nanny import start_nanny as start_ipyparallel_nanny

    info = connector.info
    config = Config()
    config.Session.key = key.encode()
    config.Session.signature_scheme = signature_scheme
    try:
        url, process = start_ipyparallel_nanny(
            engine_id=engine_id,
            identity=uuid.encode("ascii"),
            control_url=connector.address(info.url("control")),
            registration_url=connector.address(info.url("registration")),
            curve_serverkey=info.curve_serverkey or None,
            curve_secretkey=connector.curve_secretkey or None,
            curve_publickey=connector.curve_publickey or None,
            config=config,
            log_level=log.getEffectiveLevel(),
        )
    except RuntimeError as e:
        raise EngineError(f"the nanny did not start: {e}") from None
    return Nanny(url, process)
