"""akernel as an ipyparallel engine: ``akernel engine`` / ``python -m akernel.engine``.

On an engine, :func:`bind_kernel` lets Jupyter frontends attach to it.
"""

from .bind import bind_kernel

__all__ = ["bind_kernel"]
