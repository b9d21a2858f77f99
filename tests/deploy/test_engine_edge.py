"""The process-wide engine stays at the adapter edge; every flow is handed its engine."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EDGE = "shared.engine.edge"

# The adapters, and what stands in for one: the function entry points, the CLI, the
# start-up check every function runs, and the local stack that serves the functions.
ADAPTERS = (
    "functions/",
    "shared/cli/",
    "shared/web.py",
    "localdev/stack.py",
    "shared/engine/edge.py",
)


def _imports_edge(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module is not None:
            names = {f"{node.module}.{alias.name}" for alias in node.names}
            if node.module == EDGE or EDGE in names:
                return True
        if isinstance(node, ast.Import) and any(a.name == EDGE for a in node.names):
            return True
    return False


def importers() -> set[str]:
    """The project's modules that read the process-wide engine."""
    return {
        path.relative_to(ROOT).as_posix()
        for folder in ("shared", "functions", "localdev")
        for path in (ROOT / folder).rglob("*.py")
        if _imports_edge(path)
    }


def test_only_adapters_read_the_process_wide_engine() -> None:
    found = importers()
    beyond = sorted(p for p in found if not p.startswith(ADAPTERS))
    assert not beyond, f"flows must take the engine as a parameter: {beyond}"
    assert any(p.startswith("functions/") for p in found)  # the check sees real imports


def test_an_import_below_the_adapters_is_caught(tmp_path: Path) -> None:
    flow = tmp_path / "shared" / "outbound" / "flow.py"
    flow.parent.mkdir(parents=True)
    flow.write_text("from shared.engine import edge\n")
    assert _imports_edge(flow)
    (tmp_path / "shared" / "plain.py").write_text("from shared.engine import Engine\n")
    assert not _imports_edge(tmp_path / "shared" / "plain.py")
