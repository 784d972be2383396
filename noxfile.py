"""Sessions: tests, launchers, e2e, demo, bench, hostile, lint, ipp_suite.

``nox -s tests`` sets up and runs the whole test suite, ``nox -s launchers``
starts engines through real sshd and Slurm daemons, and ``nox -s e2e`` drives
akernel in JupyterLab in a headless Chromium (CI runs the three, in this
order); ``nox -s demo`` runs the demo notebook.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["tests"]
# One core per xdist worker; this project's machines have two.
WORKERS = os.environ.get("AKERNEL_TEST_WORKERS", "2")
CHROMIUM = "/usr/bin/chromium"


def _apt_install(session: nox.Session, packages: dict[str, str]) -> None:
    """Install Debian's packages ({package: a command it provides}) whose command is
    missing, when apt-get is there and this runs as root (as on CI)."""
    missing = [package for package, command in packages.items() if not shutil.which(command)]
    if missing and shutil.which("apt-get") and os.geteuid() == 0:
        apt_env = {"DEBIAN_FRONTEND": "noninteractive"}
        session.run("apt-get", "update", "-qq", external=True, env=apt_env)
        session.run("apt-get", "install", "-y", "-qq", *missing, external=True, env=apt_env)


def _qt_x_libraries() -> dict[str, str]:
    """Debian's packages of the X libraries Qt's xcb platform plugin loads, keyed
    for ``_apt_install`` by Xvfb's command: they come with it."""
    libraries = (
        "libegl1 libfontconfig1 libgl1 libglib2.0-0 libx11-xcb1 libxkbcommon-x11-0 libxcb-cursor0"
        " libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0"
        " libxcb-shape0 libxcb-xkb1"
    )
    return dict.fromkeys(libraries.split(), "Xvfb")


def _install_kernelspecs(session: nox.Session) -> None:
    session.run("akernel", "install", "--sys-prefix", silent=True)
    session.run("akernel", "install", "--sys-prefix", "--backend", "trio", silent=True)


@nox.session
def tests(session: nox.Session) -> None:
    """Install the project with its test extras and run the whole test suite, then
    ipyparallel's own test suite with akernel engines (asyncio backend; see
    ``ipp_suite``). Arguments after ``--`` go to pytest, and then only our own
    suite runs."""
    # tests/test_mpi_cluster.py starts engines with Open MPI's mpiexec; tests/test_gui.py
    # a virtual X server, with the X libraries Qt's xcb platform plugin loads (no command
    # of their own: installed along with Xvfb).
    _apt_install(session, {"openmpi-bin": "mpiexec", "xvfb": "Xvfb", **_qt_x_libraries()})
    session.install("-e", ".[test]")
    _install_kernelspecs(session)
    # Files in the order tests/conftest.py gives them (slow ones first), as queued.
    session.run(
        "pytest", "-n", WORKERS, "--dist", "loadfile", "--no-loadscope-reorder", *session.posargs
    )
    if not session.posargs:
        _run_ipp_suite(session, [])


@nox.session
def launchers(session: nox.Session) -> None:
    """Start akernel engines through ipyparallel's SSH and Slurm launchers, for real.

    Installs Debian's openssh-server, slurm-wlm, munge and openmpi-bin when missing
    (as root, as on CI), then runs tests/launchers: an sshd on 127.0.0.1 and a
    one-node Slurm (munged, slurmctld, slurmd) made and stopped by the tests, with
    docs/parallel.md's configurations, on both backends.
    """
    _apt_install(
        session,
        {
            "openssh-server": "/usr/sbin/sshd",
            "openssh-client": "ssh",
            "munge": "munged",
            "slurm-wlm": "slurmctld",
            "openmpi-bin": "mpiexec",
        },
    )
    # What these tests use, not the whole test extra (a minute less to install).
    session.install(
        "-e", ".", "pytest", "pytest-timeout", "psutil", "trio", "ipyparallel>=9", "mpi4py>=4"
    )
    # -s: each test prints what it saw (engine ids, processes, the allreduce).
    session.run("pytest", "tests/launchers", "-v", "-s", "-p", "no:cacheprovider", *session.posargs)


@nox.session
def e2e(session: nox.Session) -> None:
    """Drive akernel in JupyterLab in a headless Chromium, on both backends.

    Needs Debian's ``chromium`` at /usr/bin/chromium, installed here with
    apt-get when missing and running as root; Playwright drives it, so no
    browser is downloaded.
    """
    _apt_install(session, {"chromium": CHROMIUM})
    session.install(
        ".",
        # The test finds its way in JupyterLab 4's and ipywidgets 8's pages.
        "jupyterlab>=4,<5",
        "ipywidgets>=8,<9",
        "matplotlib",
        "nbformat",
        "playwright",
        "pytest",
        "pytest-timeout",
        "sniffio",
        "tqdm",
        "trio",
    )
    _install_kernelspecs(session)
    session.run("pytest", "tests/e2e", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Register akernel and execute the example notebook with it through nbclient,
    then run an ipyparallel cluster of akernel engines. (The test suite runs both
    scripts too, on its own kernelspecs: tests/test_docs_examples.py.)"""
    session.install(".[parallel]", "nbclient", "nbformat", "trio", "numpy")
    _install_kernelspecs(session)
    session.run("python", "examples/run_demo.py", *session.posargs)
    session.run("python", "examples/run_cluster_demo.py")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmark akernel against ipykernel, side by side, in one run: the kernel,
    then ipyparallel clusters of akernel and ipykernel engines."""
    # The GUI measures (benchmarks/bench_gui.py) need Qt and a display (an Xvfb).
    _apt_install(session, {"xvfb": "Xvfb", **_qt_x_libraries()})
    session.install(".[bench,parallel]", "trio", "numpy", "PySide6-Essentials")
    session.run("python", "benchmarks/bench_kernel.py", *session.posargs)
    quick = ["--quick"] if "--quick" in session.posargs else []
    session.run("python", "benchmarks/bench_parallel.py", *quick)


@nox.session
def hostile(session: nox.Session) -> None:
    """Send what a hostile client would to akernel (asyncio and trio) and ipykernel, side
    by side, and print a Markdown table of what each kernel did. ``-- --quick`` for a
    shorter run (under two minutes); other arguments go to benchmarks/hostile.py."""
    # pytest: the fuzzing scenario imports the request generator of tests/fuzz_requests.py.
    session.install(".[bench,parallel]", "trio", "psutil", "pytest")
    session.run("python", "benchmarks/hostile.py", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "akernel", "tests", "benchmarks", "examples")
    session.run("ruff", "format", "--check", "akernel", "tests", "benchmarks", "examples")


@nox.session
def ipp_suite(session: nox.Session) -> None:
    """Run ipyparallel's own test suite with akernel engines (asyncio backend).

    tests/ipp/akernel_engines.py swaps the engine command the suite starts;
    it runs from a temporary directory (its report and log stay there), on
    WORKERS xdist workers, a file per worker (the suite keeps a cluster per
    module). Arguments go to pytest: ``-- --ipp-engines=ipykernel`` runs the
    baseline (ipykernel engines), ``-- --ipp-backend=trio`` the trio
    backend, ``-- -k test_magics`` a part. Fails when a test fails.
    """
    session.install("-e", ".[test]")
    _run_ipp_suite(session, session.posargs)


def _run_ipp_suite(session: nox.Session, pytest_args: list[str]) -> None:
    # What ipyparallel's suite needs besides our test extras.
    session.install("pytest-asyncio", "testpath")
    here = Path(__file__).parent.resolve()
    run_dir = Path(tempfile.mkdtemp(prefix="akernel-ipp-suite-"))
    session.log(f"running in {run_dir} (pytest's output: {run_dir}/pytest*.log)")
    env = {"PYTHONPATH": str(here / "tests" / "ipp"), "AKERNEL_IPP_SUITE_RUN": str(run_dir)}
    summary = str(here / "tests" / "ipp" / "summary.py")

    def run(name: str, targets: list[str], workers: str) -> tuple[Path, str]:
        report = run_dir / f"{name}.xml"
        command = [
            # A last resort: the plugin's watchdog fails a hung test after 60 s.
            "timeout", "--kill-after=30", "900",
            "pytest", *targets,
            "-p", "akernel_engines", "-p", "no:cacheprovider",
            "-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function",
            "-n", workers, "--dist", "loadfile",
            "--timeout=60", "-q", "-rfE", f"--junitxml={report}",
            *pytest_args,
        ]  # fmt: skip
        try:
            # external: ``timeout``; the pytest it runs is the session's.
            output = session.run(
                *command, env=env, external=True, silent=True, success_codes=[0, 1]
            )
        finally:
            session.run("python", str(here / "tests" / "ipp" / "reap.py"), str(run_dir))
        output = output or ""
        (run_dir / f"{name}.log").write_text(output)
        # pytest's closing line (it has the xfailed and xpassed counts too).
        closing = re.findall(r"^\d+ (?:passed|failed).* in [\d.]+s.*$", output, re.M)
        print(closing[-1] if closing else "pytest printed no closing line")
        return report, output

    with session.chdir(run_dir):
        report, output = run("pytest", ["--pyargs", "ipyparallel.tests"], WORKERS)
        # Node ids come relative to ipyparallel/tests: as --pyargs names again.
        failed = list(
            dict.fromkeys(
                "ipyparallel.tests." + path[: -len(".py")].replace("/", ".") + rest
                for path, rest in re.findall(
                    r"^(?:FAILED|ERROR) ([^\s:]+\.py)(::\S+)", output, re.M
                )
            )
        )
        if not failed:
            session.run("python", summary, str(report))
            return
        # Some of ipyparallel's tests depend on timing, whatever the engines:
        # those that failed get one more try, alone; failing twice fails.
        session.run("python", summary, str(report), success_codes=[0, 1])
        session.log(f"running the {len(failed)} failed test(s) once more, one at a time")
        retry_report, _ = run("pytest-retry", ["--pyargs", *failed], "0")
        session.run("python", summary, str(retry_report))
