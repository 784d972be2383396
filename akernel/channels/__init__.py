"""The channels layer: socket tasks, request dispatch, IOPub, stdin, control."""

from .control import ControlThread
from .dispatch import Handler, RequestDispatcher, current_request
from .fdcapture import FdCapture
from .iopub import IOPubPublisher
from .stdin import StdinChannel, StdinNotAllowed

__all__ = [
    "ControlThread",
    "FdCapture",
    "Handler",
    "IOPubPublisher",
    "RequestDispatcher",
    "StdinChannel",
    "StdinNotAllowed",
    "current_request",
]
