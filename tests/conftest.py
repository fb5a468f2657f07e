"""Test setup: 8 fake CPU devices (set before JAX is imported) and shared helpers."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One on-disk XLA compilation cache for the test run: pytest workers and the `jepa-jax` processes tests start
# compile the same small models many times.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), ".pytest_cache", "jax_compilation"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import importlib  # pylint: disable=g-import-not-at-top

import pytest  # pylint: disable=g-import-not-at-top

from jepa_jax import config as config_lib  # pylint: disable=g-import-not-at-top

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_WORLD = os.path.join(REPO, "experiments", "configs", "tiny_world.py")


def run_cli(*args, **env):
    """`jepa-jax ARGS...` in a subprocess from the repo root (environment plus `env`); the CompletedProcess."""
    import subprocess  # pylint: disable=g-import-not-at-top
    import sys  # pylint: disable=g-import-not-at-top
    return subprocess.run([sys.executable, "-m", "jepa_jax.cli", *args], cwd=REPO, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=600, check=False)


def require(module: str):
    """Import an optional extra (e.g. torch): skipped where it is not installed, but a failure when
    JEPA_JAX_REQUIRE_EXTRAS=1 (CI installs every extra, so a missing one must not pass as a skip)."""
    if os.environ.get("JEPA_JAX_REQUIRE_EXTRAS") == "1":
        return importlib.import_module(module)
    return pytest.importorskip(module)


@pytest.fixture
def smoke_config():
    """The tiny-world config shrunk to a seconds-long run."""
    return config_lib.load(TINY_WORLD, "smoke")


def assert_stream_resumes_exactly(make_stream, skip: int = 1, check: int = 3) -> None:
    """The stream restored from its state after `skip` elements equals the uninterrupted one, leaf by leaf.

    The state goes through JSON on the way, as it does in a checkpoint.
    """
    import json  # pylint: disable=g-import-not-at-top
    import jax  # pylint: disable=g-import-not-at-top
    import numpy as np  # pylint: disable=g-import-not-at-top
    it = iter(make_stream())
    for _ in range(skip):
        next(it)
    state = json.loads(json.dumps(it.get_state()))
    expected = [next(it) for _ in range(check)]
    resumed = iter(make_stream())
    resumed.set_state(state)
    for want in expected:
        jax.tree.map(np.testing.assert_array_equal, next(resumed), want)
