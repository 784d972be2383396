"""Libraries recognise akernel as a Jupyter kernel, each tested with the library itself.

tqdm, rich, plotly, bokeh, pyviz_comms and ipykernel (installed beside
akernel, never imported by it) run in the kernel; the test, as the frontend,
looks at what they publish. See akernel/execution/recognition.py for the
idioms each library tests.
"""

from __future__ import annotations

import json
import os

from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.manager import KernelManager

from .utils import TIMEOUT, collect_iopub, execute, msg_types, printed, stream_text, user_value
from .utils import run_ok as run

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PLOTLY_MIME = "application/vnd.plotly.v1+json"


def test_the_shell_looks_like_a_jupyter_kernels(
    kernel: tuple[KernelManager, BlockingKernelClient], kc: BlockingKernelClient
) -> None:
    """The idioms libraries and notebooks use to ask "am I in a Jupyter kernel?"."""
    km, _ = kernel
    assert user_value(kc, "get_ipython().__class__.__name__") == "'ZMQInteractiveShell'"
    assert user_value(kc, "type(get_ipython()).__module__.startswith('ipykernel.')") == "True"
    assert user_value(kc, "'ipykernel.zmqshell' in __import__('sys').modules") == "True"
    assert user_value(kc, "'IPKernelApp' in get_ipython().config") == "True"
    path = user_value(kc, "get_ipython().config['IPKernelApp']['connection_file']")
    assert path == repr(os.path.abspath(km.connection_file))
    # Code that imported the shell under its former name still works.
    assert user_value(kc, "__import__('akernel').execution.AkernelShell is type(get_ipython())")
    assert user_value(kc, "isinstance(get_ipython(), __import__('IPython').InteractiveShell)")


def test_the_shell_module_says_what_it_is(kc: BlockingKernelClient) -> None:
    """Asked for anything of ipykernel's, the module standing in for its shell module says so."""
    reply, _ = execute(kc, "from ipykernel.zmqshell import ZMQDisplayPublisher")
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "ImportError"
    code = "import ipykernel.zmqshell as m\nprint(m.ZMQInteractiveShell is type(get_ipython()))"
    assert printed(kc, code) == "True\n"


def test_ipykernel_get_connection_file(
    kernel: tuple[KernelManager, BlockingKernelClient], kc: BlockingKernelClient
) -> None:
    """``ipykernel.get_connection_file()`` (and ``get_connection_info``) when
    ipykernel is installed: ipykernel's own raises, finding no IPKernelApp."""
    km, _ = kernel
    out = printed(
        kc,
        "import ipykernel, ipykernel.connect, json\n"
        "print(ipykernel.get_connection_file())\n"
        "print(ipykernel.connect.get_connection_file())\n"
        "print(ipykernel.get_connection_info(unpack=True)['shell_port'])\n",
    )
    first, second, port = out.splitlines()
    assert first == second == os.path.abspath(km.connection_file)
    assert int(port) == km.shell_port


def test_tqdm_auto_is_the_widget_bar(kc: BlockingKernelClient) -> None:
    """``tqdm.auto`` chooses ``tqdm.notebook``: a progress widget, not text on stderr."""
    outputs = run(
        kc,
        "from tqdm.auto import tqdm\n"
        "from tqdm.notebook import tqdm_notebook\n"
        "print(issubclass(tqdm, tqdm_notebook))\n"
        "for _ in tqdm(range(5), desc='working'):\n"
        "    pass\n",
    )
    assert stream_text(outputs) == "True\n"
    assert "it/s" not in stream_text(outputs, "stderr")
    models = [
        m["content"]["data"]["state"]["_model_name"]
        for m in outputs
        if m["msg_type"] == "comm_open"
    ]
    assert "FloatProgressModel" in models
    shown = [m for m in outputs if m["msg_type"] == "display_data"]
    assert len(shown) == 1 and WIDGET_VIEW in shown[0]["content"]["data"]
    # The bar is updated through its comm, to the end.
    values = [
        m["content"]["data"]["state"].get("value") for m in outputs if m["msg_type"] == "comm_msg"
    ]
    assert 5 in values or 5.0 in values


def test_rich_renders_for_jupyter(kc: BlockingKernelClient) -> None:
    """rich sees Jupyter: ``print`` gives HTML (and ANSI text), not plain text."""
    assert printed(kc, "from rich.console import Console\nprint(Console().is_jupyter)") == (
        "True\n"
    )
    outputs = run(kc, "from rich import print as rich_print\nrich_print('[bold red]Hi[/]')")
    assert stream_text(outputs) == ""
    shown = [m["content"]["data"] for m in outputs if m["msg_type"] == "display_data"]
    assert len(shown) == 1, msg_types(outputs)
    assert "font-weight: bold" in shown[0]["text/html"] and ">Hi</span>" in shown[0]["text/html"]
    assert shown[0]["text/plain"] == "\x1b[1;31mHi\x1b[0m\n"


def test_plotly_uses_the_mimetype_renderer(kc: BlockingKernelClient) -> None:
    """plotly's default renderer is ``plotly_mimetype``: a figure is its JSON,
    not megabytes of HTML with plotly.js embedded."""
    assert printed(kc, "import plotly.io as pio\nprint(pio.renderers.default)") == (
        "plotly_mimetype\n"
    )
    outputs = run(kc, "import plotly.graph_objects as go\ngo.Figure(go.Bar(y=[1, 3, 2])).show()")
    shown = [m["content"]["data"] for m in outputs if m["msg_type"] == "display_data"]
    assert len(shown) == 1, msg_types(outputs)
    assert PLOTLY_MIME in shown[0] and "text/html" not in shown[0]
    assert shown[0][PLOTLY_MIME]["data"][0]["y"] == [1, 3, 2]
    assert len(json.dumps(shown[0])) < 100_000


def test_ipykernel_comm_publishes(kc: BlockingKernelClient) -> None:
    """``from ipykernel.comm import Comm``: its messages reach the frontend
    (ipykernel's sends nothing, silently, outside ipykernel)."""
    outputs = run(
        kc,
        "import warnings\n"
        "from ipykernel.comm import Comm\n"
        "with warnings.catch_warnings():\n"
        "    warnings.simplefilter('ignore', DeprecationWarning)\n"
        "    ipk_comm = Comm(target_name='ipk-target', data={'hello': 1})\n"
        "ipk_comm.send({'n': 2})\n",
    )
    opened = [m["content"] for m in outputs if m["msg_type"] == "comm_open"]
    assert len(opened) == 1 and opened[0]["target_name"] == "ipk-target"
    assert opened[0]["data"] == {"hello": 1}
    sent = [m["content"] for m in outputs if m["msg_type"] == "comm_msg"]
    assert sent == [{"data": {"n": 2}, "comm_id": opened[0]["comm_id"]}]


def test_bokeh_push_notebook(kc: BlockingKernelClient) -> None:
    """bokeh's ``show(..., notebook_handle=True)`` opens a comm, ``push_notebook``
    sends the document's changes through it."""
    outputs = run(
        kc,
        "from bokeh.io import output_notebook, push_notebook, show\n"
        "from bokeh.plotting import figure\n"
        "output_notebook(hide_banner=True)\n"
        "plot = figure(width=200, height=200)\n"
        "line = plot.line([1, 2, 3], [4, 5, 6])\n"
        "handle = show(plot, notebook_handle=True)\n",
    )
    opened = [m["content"] for m in outputs if m["msg_type"] == "comm_open"]
    assert len(opened) == 1, msg_types(outputs)
    outputs = run(kc, "line.data_source.data['y'] = [7, 8, 9]\npush_notebook(handle=handle)\n")
    sent = [
        m["content"]
        for m in outputs
        if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == opened[0]["comm_id"]
    ]
    assert sent, msg_types(outputs)
    assert any("PATCH-DOC" in str(c["data"]) for c in sent)
    assert any("[7,8,9]" in str(c["data"]).replace(" ", "") for c in sent)


def test_pyviz_comms_both_ways(kc: BlockingKernelClient) -> None:
    """pyviz_comms (Panel, HoloViews): a ``JupyterComm`` sends to the frontend,
    and the frontend's messages reach its handler."""
    outputs = run(
        kc,
        "from pyviz_comms import JupyterComm\n"
        "received = []\n"
        "viz = JupyterComm(id='viz-plot', on_msg=received.append)\n"
        "viz.send({'x': 1})\n",
    )
    opened = [m["content"] for m in outputs if m["msg_type"] == "comm_open"]
    assert len(opened) == 1 and opened[0]["target_name"] == "viz-plot"
    comm_id = opened[0]["comm_id"]
    sent = [m["content"]["data"] for m in outputs if m["msg_type"] == "comm_msg"]
    assert sent == [{"x": 1}]
    # The frontend answers on the comm: pyviz_comms decodes it and calls back.
    msg = kc.session.msg("comm_msg", {"comm_id": comm_id, "data": {"from": "frontend"}})
    kc.shell_channel.send(msg)
    replies = collect_iopub(kc, msg["header"]["msg_id"], TIMEOUT)
    assert any(
        m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == comm_id for m in replies
    ), msg_types(replies)  # pyviz_comms acknowledges with a "Ready" message
    assert user_value(kc, "received") == "[{'from': 'frontend'}]"
