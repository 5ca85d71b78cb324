"""The package's shape: no import cycles, and no module importing upwards across the layers README's package
layout names; both with the imports that only type checkers run (under TYPE_CHECKING) counted too."""

from __future__ import annotations

import ast
from pathlib import Path

import dreamtext

ROOT = Path(dreamtext.__file__).parent
# Lowest first: a module may import its own layer and the ones before it.
LAYERS = ("errors", "utils", "scene", "data", "world", "metrics", "prior", "export", "methods", "gallery", "viewer",
          "batch", "bench", "cli")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports() -> dict[str, set[str]]:
    """Every in-package module each module imports (functions' imports and those under TYPE_CHECKING included)."""
    modules = {module_name(path): path for path in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        targets: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)] if node.level else []
                target = ".".join(base + ([node.module] if node.module else [])) if node.level else (node.module or "")
                candidates = [target] + [f"{target}.{alias.name}" for alias in node.names]
            else:
                continue
            for candidate in candidates:
                while candidate and candidate not in modules and "." in candidate:
                    candidate = candidate.rsplit(".", 1)[0]
                if candidate in modules and candidate != name:
                    targets.add(candidate)
        graph[name] = targets
    return graph


def layer(name: str) -> int | None:
    parts = name.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def test_no_module_imports_a_higher_layer():
    upward = [(a, b) for a, targets in runtime_imports().items() for b in targets
              if layer(a) is not None and layer(b) is not None and layer(b) > layer(a)]
    assert upward == []


def test_no_import_cycles():
    graph = runtime_imports()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_in_package_imports_stand_at_the_top_of_their_modules():
    """Lazy imports are kept for optional or heavy third-party backends (triton, viser, diffusers, transformers,
    open_clip); a module's own package's imports stand at its top, where a reader sees what it depends on.
    The two exceptions: the package's lazy public API, and the optional Triton kernel module."""
    allowed = {("dreamtext", "__getattr__"), ("dreamtext.scene.hash_encoding", "_triton_module")}
    modules = {module_name(path): path for path in ROOT.rglob("*.py")}
    inside = []
    for name, path in modules.items():
        for function in ast.walk(ast.parse(path.read_text())):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)) and (name, function.name) not in allowed:
                inside += [f"{name}.{function.name}:{node.lineno}" for node in ast.walk(function)
                           if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("dreamtext"))]
    assert inside == []


def test_the_layer_lists_in_the_readme_and_the_package_doc_are_the_checked_one():
    """Issue 38: one layer list. README's package layout names the layers in LAYERS's order, and the package
    docstring repeats LAYERS exactly."""
    import re

    import dreamtext

    readme = (ROOT.parent.parent / "README.md").read_text()
    block = readme.split("## Package layout", 1)[1].split("```", 2)[1]
    entries = [re.split(r"\s{2,}", line.strip())[0] for line in block.splitlines() if re.match(r"  \S", line)]
    order = [name for entry in entries for name in re.findall(r"([a-z_]+)(?:/|\.py)", entry) if name in LAYERS]
    assert order == list(LAYERS)
    listed = re.search(r"lists the layers \(([^)]*)\)", " ".join(dreamtext.__doc__.split())).group(1)
    assert tuple(name.strip() for name in listed.split(",")) == LAYERS
