"""Contract: imports inside clsp go one way, down the layers below (function-level imports included).

A module may import modules of its own layer or of a lower one, never a higher one. Every module
must be placed: a new file fails here until it is given a layer. The package `clsp/__init__.py` is
left out: it is the public facade and re-exports `CLSPModel` lazily.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "clsp"

# Lowest first. A name covers the module and, for a package, everything inside it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("clsp.errors", "clsp.checks", "clsp.resources", "clsp.audio_io", "clsp.folders", "clsp.atomic",
              "clsp.validate")),
    ("config", ("clsp.config",)),
    ("towers and tokenizer", ("clsp.tiny", "clsp.tokenizer", "clsp.text", "clsp.audio", "clsp.clap", "clsp.processor",
                              "clsp.card", "clsp.decoder", "clsp.zeroshot")),
    ("model and losses", ("clsp.model", "clsp.losses", "clsp.hf_auto", "clsp.flops")),
    ("converters, data, loading", ("clsp.convert", "clsp.data", "clsp.loading")),
    ("evaluation", ("clsp.evaluation",)),
    ("training", ("clsp.training",)),
    ("entry points", ("clsp.train", "clsp.eval", "clsp.shards", "clsp.export")),
]


def module_name(file: Path, root: Path) -> str:
    parts = file.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(file: Path, root: Path) -> set[str]:
    """Every clsp module `file` imports, anywhere in it. `from a import b` counts as a.b when that is a module."""
    here = module_name(file, root)
    package = here if file.name == "__init__.py" else here.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                is_module = (root.parent / Path(*sub.split("."))).with_suffix(".py").exists() or (
                    root.parent / Path(*sub.split("."))).is_dir()
                names.add(sub if is_module else base)
    top = root.name
    return {n for n in names if n == top or n.startswith(top + ".")}


def layer_of(module: str, layers=LAYERS) -> int | None:
    """Index of the layer holding `module` (the longest matching name wins)."""
    best, best_len = None, -1
    for index, (_, names) in enumerate(layers):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best_len:
                best, best_len = index, len(name)
    return best


def violations(root: Path, layers=LAYERS) -> list[str]:
    """One line per upward import or unplaced module under `root`."""
    out = []
    for file in sorted(root.rglob("*.py")):
        if file == root / "__init__.py":
            continue
        module = module_name(file, root)
        mine = layer_of(module, layers)
        if mine is None:
            out.append(f"{module} is in no layer: add it to LAYERS in tests/test_layering.py")
            continue
        for target in sorted(imported_modules(file, root)):
            theirs = layer_of(target, layers)
            if theirs is not None and theirs > mine:
                out.append(f"{module} ({layers[mine][0]}) imports {target} ({layers[theirs][0]})")
    return out


def test_clsp_imports_go_one_way():
    found = violations(ROOT)
    assert not found, "upward imports:\n" + "\n".join(found)


def test_model_code_imports_no_pipeline_training_or_evaluation():
    # The promise in DESIGN.md, stated directly (the layers above imply it).
    lower = ("clsp.config", "clsp.audio", "clsp.text", "clsp.tokenizer", "clsp.decoder", "clsp.model", "clsp.losses")
    for file in sorted(ROOT.rglob("*.py")):
        module = module_name(file, ROOT)
        if any(module == m or module.startswith(m + ".") for m in lower):
            bad = [t for t in imported_modules(file, ROOT)
                   if t.startswith(("clsp.data", "clsp.training", "clsp.evaluation"))]
            assert not bad, f"{module} imports {bad}"


@pytest.fixture
def fake_package(tmp_path):
    """pkg/low.py imports pkg.high inside a function; pkg/high.py imports pkg.low; pkg/stray.py has no layer."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "low.py").write_text("def f():\n    from pkg.high import g\n    return g\n")
    (pkg / "high.py").write_text("from pkg import low\nfrom .sub import leaf\n")
    (pkg / "sub" / "leaf.py").write_text("from .. import low\n")
    (pkg / "stray.py").write_text("")
    return pkg


def test_checker_finds_a_function_level_upward_import_and_an_unplaced_module(fake_package):
    layers = [("low", ("pkg.low", "pkg.sub")), ("high", ("pkg.high",))]
    found = violations(fake_package, layers)
    assert found == ["pkg.low (low) imports pkg.high (high)",
                     "pkg.stray is in no layer: add it to LAYERS in tests/test_layering.py"]


def test_checker_resolves_relative_and_from_package_imports(fake_package):
    assert imported_modules(fake_package / "high.py", fake_package) == {"pkg.low", "pkg.sub.leaf"}
    assert imported_modules(fake_package / "sub" / "leaf.py", fake_package) == {"pkg.low"}
