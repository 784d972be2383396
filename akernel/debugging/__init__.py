"""The package for JupyterLab's debugger."""
