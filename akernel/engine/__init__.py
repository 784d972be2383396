"""akernel as an ipyparallel engine: ``akernel engine`` / ``python -m akernel.engine``."""
