"""The embedded Triton: ``tritonserver`` from PyPI's ``nvidia-pytriton`` wheel, and how to start it.

We never install ``nvidia-pytriton`` (its dependencies conflict with ours); we only download its wheel and
unpack it, keeping the wheel's tree so that the binaries' RPATH (``$ORIGIN/../../../nvidia_pytriton.libs``
and similar) still finds the bundled shared libraries. Layout under ``tools_dir/pytriton``::

    pytriton/tritonserver/   bin/tritonserver, backends/python/ (+ the stub we copy in), caches/
    nvidia_pytriton.libs/    the shared libraries the binaries' RPATH points at
    python/                  the Python environment the model runs in (see below)

How the Python backend runs a model outside the NGC container:

- It runs each model instance in a separate process, ``<backends>/python/triton_python_backend_stub``
  (or ``<model>/triton_python_backend_stub`` when a model ships its own), started through ``bash -c`` with
  Triton's environment. The wheel carries one stub per Python version under
  ``tritonserver/python_backend_stubs/<major.minor>/``; like pytriton we copy the one for this
  interpreter's version into ``backends/python/``.
- The stub links ``libpython3.X.so.1.0``, but its RPATH holds only ``nvidia_pytriton.libs``: unless this
  interpreter's ``LIBDIR`` comes first on ``LD_LIBRARY_PATH``, the loader takes the system's libpython
  (Debian's 3.11.2 here) and mixes it with this interpreter's standard library.
- The embedded interpreter runs in isolated mode (``PYTHONPATH`` and ``PYTHONHOME`` are ignored) and finds
  its prefix the way a bare ``python3`` would: it looks ``python3`` up on ``PATH`` and, when that sits in a
  virtual environment, reads the ``pyvenv.cfg`` beside it. So the first ``python3`` on ``PATH`` chooses the
  model's site-packages.
- The stub's pybind11 predates NumPy 2 (pytriton requires ``numpy<2``): under NumPy 2 its arrays are
  garbled (a ``TYPE_STRING`` input reads as its first byte repeated, and the stub crashes). Our own
  environment has NumPy 2, so the model runs in ``python/``: a virtual environment of this interpreter
  whose site-packages hold only NumPy 1.x and a ``.pth`` line that appends this environment's
  site-packages, where llama-cpp-python and the model's weights are installed. NumPy 1.x comes first and
  wins; everything else is shared.
"""

import contextlib
import fcntl
import logging
import os
import secrets
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import venv
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)

PYTRITON_VERSION = "0.7.0"
# The last NumPy before 2.0, for the Python backend stub's pybind11.
STUB_NUMPY = "numpy==1.26.4"
_PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
# Written last: its presence means the tree is complete, with the stub and environment for this Python.
_MARKER = f".complete-nvidia-pytriton-{PYTRITON_VERSION}-py{_PYTHON_VERSION}"
# How long Triton lets requests in flight finish after SIGTERM (its default, 30 s, outlives any orchestrator's
# patience); a generation still running then is cut, and its caller sees the stream fail.
EXIT_TIMEOUT_SECONDS = 2
SHM_DIR = Path("/dev/shm")


def ensure_tritonserver(tools_dir: Path) -> Path:
    """Make sure ``tritonserver`` and the model's Python environment are under ``tools_dir/pytriton``.

    Returns the tritonserver root (``bin/tritonserver``, ``backends/``, ``caches/``). Idempotent: a complete
    tree is left alone, an incomplete one (an interrupted run) is rebuilt. A file lock serialises
    concurrent callers, such as two test sessions.
    """
    destination = tools_dir / "pytriton"
    root = destination / "pytriton" / "tritonserver"
    tools_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(tools_dir / "pytriton.lock"):
        if (destination / _MARKER).is_file():
            logger.debug("tritonserver already unpacked in %s", destination)
            return root
        if destination.exists():
            logger.info("removing an incomplete or outdated tritonserver tree in %s", destination)
            shutil.rmtree(destination)
        with tempfile.TemporaryDirectory(prefix="pytriton-wheel-") as download_dir:
            wheel = _download_wheel(Path(download_dir))
            logger.info("unpacking %s into %s", wheel.name, destination)
            _unzip(wheel, destination)
        _install_python_stub(root)
        _create_model_python(_model_python(root))
        (destination / _MARKER).touch()
    logger.info("tritonserver ready in %s", root)
    return root


def triton_process_spec(
    triton_root: Path,
    model_repository: Path,
    grpc_port: int,
    http_port: int,
    metrics_port: int,
    *,
    shm_prefix: str,
) -> tuple[list[str], dict[str, str]]:
    """Return the argv and the environment that start ``tritonserver`` serving ``model_repository``.

    Endpoints listen on loopback only. Every model in the repository is loaded at start-up (explicit
    model control, no polling); a model that fails to load stops the server (``--exit-on-error``), and
    the server reports ready only once all its models are (``--strict-readiness``). On SIGTERM it waits
    at most ``EXIT_TIMEOUT_SECONDS`` for requests in flight, then unloads its models and exits. The Python
    backend's shared-memory regions in ``/dev/shm`` start with ``shm_prefix`` (see ``new_shm_prefix``), so
    that two servers never share one and ``remove_shm_regions`` finds what a killed server left. The
    environment is this process's, with this interpreter's ``LIBDIR`` first on ``LD_LIBRARY_PATH`` and the
    model's Python environment first on ``PATH`` (see the module's docstring).
    """
    argv = [
        str(triton_root / "bin" / "tritonserver"),
        f"--model-repository={model_repository}",
        "--model-control-mode=explicit",
        "--load-model=*",
        f"--backend-directory={triton_root / 'backends'}",
        f"--cache-directory={triton_root / 'caches'}",
        f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
        f"--exit-timeout-secs={EXIT_TIMEOUT_SECONDS}",
        "--grpc-address=127.0.0.1",
        f"--grpc-port={grpc_port}",
        "--http-address=127.0.0.1",
        f"--http-port={http_port}",
        "--metrics-address=127.0.0.1",
        f"--metrics-port={metrics_port}",
        "--allow-gpu-metrics=false",
        "--pinned-memory-pool-byte-size=0",  # the embedded models run on CPU; no CUDA host buffers
        "--log-verbose=0",
        "--exit-on-error=true",
        "--strict-readiness=true",
    ]
    env = dict(os.environ)
    libpython_dir = sysconfig.get_config_var("LIBDIR")
    env["LD_LIBRARY_PATH"] = _prepend_path(libpython_dir, env.get("LD_LIBRARY_PATH"))
    env["PATH"] = _prepend_path(str(_model_python(triton_root) / "bin"), env.get("PATH"))
    return argv, env


def new_shm_prefix() -> str:
    """A prefix for one server's shared-memory regions, unique to it (the Python backend adds a UUID per region)."""
    return f"subsecond-triton-{secrets.token_hex(4)}-"


def remove_shm_regions(prefix: str) -> list[str]:
    """Remove the ``/dev/shm`` regions named ``prefix...``; returns their names.

    A server that exits cleanly removes its own regions; one that is killed (or whose stubs are) leaves them,
    each as large as the backend's shared-memory pool, until the machine restarts. Only for a server that is
    no longer running: its processes keep what they mapped, but a region removed under a live server cannot
    be opened by the stubs it starts afterwards.
    """
    if not prefix.startswith("subsecond-triton-"):  # never a pattern that could match someone else's regions
        raise ValueError(f"not a subsecond shared-memory prefix: {prefix!r}")
    removed = []
    for region in SHM_DIR.glob(f"{prefix}*"):
        with contextlib.suppress(FileNotFoundError):
            region.unlink()
            removed.append(region.name)
    return removed


def _download_wheel(download_dir: Path) -> Path:
    """Download the nvidia-pytriton wheel (without its dependencies) with this interpreter's pip."""
    logger.info("downloading nvidia-pytriton==%s (about 55 MB)", PYTRITON_VERSION)
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
        f"nvidia-pytriton=={PYTRITON_VERSION}", "-d", str(download_dir),
    ]  # fmt: skip
    _run(command, "pip download of nvidia-pytriton")
    (wheel,) = download_dir.glob("nvidia_pytriton-*.whl")
    return wheel


def _unzip(wheel: Path, destination: Path) -> None:
    """Extract a wheel, keeping executables executable (``zipfile`` drops permission bits)."""
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.infolist():
            path = Path(archive.extract(member, destination))
            if not member.is_dir():
                unix_mode = member.external_attr >> 16
                path.chmod(0o755 if unix_mode & 0o111 else 0o644)


def _install_python_stub(triton_root: Path) -> None:
    """Copy the Python backend stub built for this interpreter's version to where the backend looks."""
    stub = triton_root / "python_backend_stubs" / _PYTHON_VERSION / "triton_python_backend_stub"
    if not stub.is_file():
        raise RuntimeError(f"nvidia-pytriton {PYTRITON_VERSION} has no backend stub for {_PYTHON_VERSION}")
    shutil.copy2(stub, triton_root / "backends" / "python" / "triton_python_backend_stub")


def _model_python(triton_root: Path) -> Path:
    """The model's Python environment, beside the tritonserver tree."""
    return triton_root.parents[1] / "python"


def _create_model_python(path: Path) -> None:
    """Create the model's Python environment: NumPy 1.x first, then this environment's site-packages."""
    logger.info("creating the model's Python environment in %s (%s)", path, STUB_NUMPY)
    venv.EnvBuilder(with_pip=False).create(path)
    site_packages = Path(sysconfig.get_path("purelib", vars={"base": str(path), "platbase": str(path)}))
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--only-binary=:all:",
        "--target", str(site_packages), STUB_NUMPY,
    ]  # fmt: skip
    _run(command, "pip install of the stub's NumPy")
    ours = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    (site_packages / "subsecond-shared.pth").write_text("".join(f"{entry}\n" for entry in ours))


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed) for the duration of the block."""
    with path.open("a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _run(command: list[str], what: str) -> None:
    """Run a command, raising with its error output if it fails."""
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{completed.stderr}")


def _prepend_path(first: str, rest: str | None) -> str:
    """Put ``first`` in front of a ``:``-separated search path."""
    return f"{first}:{rest}" if rest else first
