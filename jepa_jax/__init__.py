"""jepa_jax: a JAX-native framework for JEPA world models (I-JEPA, V-JEPA, V-JEPA 2, V-JEPA 2-AC)."""

__version__ = "0.1.0"
