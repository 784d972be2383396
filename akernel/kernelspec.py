"""Writing and removing akernel's Jupyter kernelspec."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import zmq

from .app import UsageError
from .debugging.server import debugpy_available

DEFAULT_NAME = "akernel"


def kernel_json(
    *,
    backend: str = "asyncio",
    display_name: str | None = None,
    interrupt_mode: str = "signal",
    env: dict[str, str] | None = None,
    executable: str | None = None,
) -> dict[str, Any]:
    """The kernel.json content for a kernel run by ``executable``."""
    argv = [executable or sys.executable, "-m", "akernel", "launch", "-f", "{connection_file}"]
    if backend != "asyncio":
        argv += ["--backend", backend]
    if display_name is None:
        display_name = (
            "Python 3 (akernel)" if backend == "asyncio" else f"Python 3 (akernel, {backend})"
        )
    spec: dict[str, Any] = {
        "argv": argv,
        "display_name": display_name,
        "language": "python",
        "interrupt_mode": interrupt_mode,
        # JupyterLab shows its debugger button for kernels whose spec says so.
        "metadata": {"debugger": debugpy_available(), "akernel": {"backend": backend}},
    }
    if zmq.has("curve"):
        # jupyter_client >= 8.9 then provisions CurveZMQ keys when its
        # KernelManager.transport_encryption is "auto" or "required".
        spec["metadata"]["supported_encryption"] = ["curve"]
    if env:
        spec["env"] = dict(env)
    return spec


def install(
    *,
    name: str | None = None,
    user: bool = False,
    prefix: str | None = None,
    **spec_options: Any,
) -> str:
    """Install the kernelspec; return the directory it was written to."""
    from jupyter_client.kernelspec import KernelSpecManager

    backend = spec_options.get("backend", "asyncio")
    if name is None:
        name = DEFAULT_NAME if backend == "asyncio" else f"{DEFAULT_NAME}-{backend}"
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "kernel.json").write_text(json.dumps(kernel_json(**spec_options), indent=1))
        return KernelSpecManager().install_kernel_spec(
            tmp, kernel_name=name, user=user, prefix=prefix
        )


def uninstall(name: str = DEFAULT_NAME) -> str:
    from jupyter_client.kernelspec import KernelSpecManager

    manager = KernelSpecManager()
    try:
        path = manager.get_kernel_spec(name).resource_dir
    except Exception:
        raise UsageError(f"no kernelspec named {name!r}") from None
    manager.remove_kernel_spec(name)
    return path


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def main(command: str, argv: list[str]) -> None:
    """``akernel install`` / ``akernel uninstall``."""
    parser = _Parser(prog=f"akernel {command}")
    if command == "uninstall":
        parser.add_argument("--name", default=DEFAULT_NAME)
        args = parser.parse_args(argv)
        print(f"Removed {uninstall(args.name)}")
        return
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="install for the current user")
    where.add_argument("--sys-prefix", action="store_true", help="install into sys.prefix")
    where.add_argument("--prefix", help="install under this prefix")
    parser.add_argument("--name", help="kernelspec name (default: akernel[-BACKEND])")
    parser.add_argument("--display-name", help="name shown in frontends")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--interrupt-mode", choices=["signal", "message"], default="signal")
    parser.add_argument(
        "--env",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        default=[],
        help="set an environment variable for the kernel (repeatable)",
    )
    args = parser.parse_args(argv)
    prefix = sys.prefix if args.sys_prefix else args.prefix
    try:
        path = install(
            name=args.name,
            user=args.user,
            prefix=prefix,
            backend=args.backend,
            display_name=args.display_name,
            interrupt_mode=args.interrupt_mode,
            env=dict(args.env),
        )
    except OSError as e:
        raise UsageError(f"cannot write kernelspec: {e}") from None
    print(f"Installed kernelspec in {path}")
