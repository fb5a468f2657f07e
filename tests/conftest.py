"""Test setup: 8 fake CPU devices (set before JAX is imported) and shared helpers."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # pylint: disable=g-import-not-at-top

from jepa_jax import config as config_lib  # pylint: disable=g-import-not-at-top

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_WORLD = os.path.join(REPO, "experiments", "configs", "tiny_world.py")


@pytest.fixture
def smoke_config():
    """The tiny-world config shrunk to a seconds-long run."""
    return config_lib.load(TINY_WORLD, "smoke")
