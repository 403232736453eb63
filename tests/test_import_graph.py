"""The package's import graph: no cycles between its rooms (subpackages and top-level modules), the
inference engine imports only the model and its parts, and inference code never reaches training.

Every import counts, also one inside a function: an import hidden there is still a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dmcodec_cli"
#: what the engine may import: the model and its modules (and their own imports, checked here too)
ENGINE_ALLOWED = {"engine", "model", "modules", "quantizer", "config", "errors"}
#: the rooms that run encode / decode of files and stores
INFERENCE = {"inference", "engine", "corpus"}
#: what the audio inputs (walker, ids, manifests, transcripts) may import: every command that takes audio uses them
INPUTS_ALLOWED = {"audio", "errors"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports, anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in known)
    return found - {name}


def room(name: str) -> str:
    """dmcodec_cli.corpus.runner -> corpus; dmcodec_cli.inference -> inference."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def room_graph() -> dict[str, set[str]]:
    rooms: dict[str, set[str]] = {}
    for name, targets in graph().items():
        rooms.setdefault(room(name), set()).update(room(t) for t in targets if room(t) != room(name))
    rooms.pop("", None)  # the package's __init__ (its version only)
    return rooms


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle [a, b, ..., a] of ``edges``, or None."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def reachable(edges: dict[str, set[str]], start: set[str]) -> set[str]:
    seen, todo = set(), list(start)
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(edges.get(node, ()))
    return seen


def test_the_graph_is_read_from_the_files():
    edges = graph()
    assert "dmcodec_cli.model" in edges["dmcodec_cli.engine.time_major"] | edges["dmcodec_cli.engine.encoder"]
    assert "dmcodec_cli.engine.encoder" in edges["dmcodec_cli.inference"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_cycles_between_modules_or_rooms():
    assert find_cycle(graph()) is None
    assert find_cycle(room_graph()) is None


def test_the_engine_imports_only_the_model_and_its_modules():
    rooms = room_graph()
    assert rooms["engine"] <= ENGINE_ALLOWED, rooms["engine"] - ENGINE_ALLOWED
    assert not reachable(rooms, {"engine"}) & {"corpus", "quality", "data", "training", "cli", "inference"}


def test_audio_inputs_sit_below_the_commands_that_use_them():
    rooms = room_graph()
    assert rooms["inputs"] <= INPUTS_ALLOWED, rooms["inputs"] - INPUTS_ALLOWED
    assert {"corpus", "data", "quality"} <= {name for name, targets in rooms.items() if "inputs" in targets}


def test_inference_code_never_imports_training():
    rooms = room_graph()
    assert "training" not in reachable(rooms, INFERENCE)
