"""Imports go down the layers: evaluation and the feature API never import the engine; the engine never imports
export code (both share jepa_jax.native below them)."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "jepa_jax"


def imported_modules(path: pathlib.Path) -> set[str]:
    """Every jepa_jax module a file imports (`from jepa_jax.x import y` counts as x and x.y), lazy imports too."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("jepa_jax")}


def files(*parts: str) -> list[pathlib.Path]:
    target = PACKAGE.joinpath(*parts)
    return sorted(target.rglob("*.py")) if target.is_dir() else [target]


@pytest.mark.parametrize("where,forbidden", [
    (("evals",), ("jepa_jax.train",)),
    (("pretrained.py",), ("jepa_jax.train",)),
    (("train",), ("jepa_jax.export", "jepa_jax.layouts")),
    (("checkpoint.py",), ("jepa_jax.export", "jepa_jax.native", "jepa_jax.train")),
    (("native.py",), ("jepa_jax.export", "jepa_jax.layouts", "jepa_jax.train", "jepa_jax.evals")),
    (("models",), ("jepa_jax.train", "jepa_jax.data", "jepa_jax.export", "jepa_jax.config")),
    (("envs",), ("jepa_jax.train", "jepa_jax.evals", "jepa_jax.data", "jepa_jax.models", "jepa_jax.config")),
    (("worlds",), ("jepa_jax.train", "jepa_jax.evals", "jepa_jax.data", "jepa_jax.models", "jepa_jax.config")),
    (("planning.py",), ("jepa_jax",)),  # generic over energies: no models, environments or engine
])
def test_no_upward_imports(where, forbidden):
    for path in files(*where):
        bad = sorted(m for m in imported_modules(path) if m.startswith(forbidden))
        assert not bad, f"{path.relative_to(PACKAGE.parent)} imports {bad}"
