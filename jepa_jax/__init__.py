"""jepa_jax: a JAX-native framework for JEPA world models (I-JEPA, V-JEPA, V-JEPA 2; V-JEPA 2-AC planned).

`jepa_jax.load(DIR)` returns a trained model (see `jepa_jax.pretrained`); it is imported on first use so that
`import jepa_jax` (and the command line's --help) stays fast.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "load":
        from jepa_jax.pretrained import load  # pylint: disable=g-import-not-at-top
        return load
    raise AttributeError(f"module 'jepa_jax' has no attribute {name!r}")
