"""``hubspot-sync package``: staged folders that load on their own, hashed by content."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from shared.cli.main import cli
from shared.packaging import (
    LOADED_WHERE_USED,
    MANIFEST,
    REPO_ROOT,
    PackagingError,
    Sources,
    content_hash,
    discover_functions,
    package_functions,
    runtime_requirements,
)
from tests.deploy.test_terraform import terraform_functions

REAL = Sources()
EXISTING = discover_functions(REAL.functions_dir)
FAKE_MAIN = """
import functions_framework

from shared.observability import configure_logging, request_context

configure_logging()


@functions_framework.http
@request_context(function="{name}")
def {name}(request):
    return "ok"
"""

# Runs inside the staged folder: load main.py the way the runtime does, then check that
# the entry point is registered and that `shared` came from the folder, not the repo.
LOADER = textwrap.dedent(
    """
    import gc, json, sys
    import functions_framework
    from functions_framework import _function_registry
    name = sys.argv[1]
    functions_framework.create_app(target=name, source="main.py")
    import shared
    print(json.dumps({"signature": _function_registry.REGISTRY_MAP.get(name),
                      "shared": shared.__file__,
                      "modules": sorted(sys.modules),
                      "frozen": gc.get_freeze_count()}))
    """
)


def fake_sources(tmp_path: Path, *names: str) -> Sources:
    functions = tmp_path / "functions"
    for name in names:
        folder = functions / name
        folder.mkdir(parents=True)
        (folder / "main.py").write_text(FAKE_MAIN.format(name=name))
    return Sources(functions_dir=functions)


def load_in_isolation(folder: Path, name: str) -> dict[str, Any]:
    """Import the staged main.py in a fresh interpreter that sees only the folder + deps.

    ``-S`` skips site processing, so the repo's editable install (a .pth finder) cannot
    supply ``shared``; the venv's site-packages stands in for the installed requirements.
    """
    site_packages = sysconfig.get_paths()["purelib"]
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "PYTHONPATH": os.pathsep.join([str(folder), site_packages]),
    }
    result = subprocess.run(
        [sys.executable, "-S", "-c", LOADER, name],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


def test_staged_folder_has_main_requirements_and_shared(tmp_path: Path) -> None:
    out = tmp_path / "out"
    [staged] = package_functions(out, fake_sources(tmp_path, "fake_fn"))
    assert staged.path == out / "fake_fn"
    assert (staged.path / "main.py").is_file()
    assert (staged.path / "shared" / "__init__.py").is_file()
    assert (staged.path / "shared" / "observability" / "logging.py").is_file()
    compiled = {p.parent.parent / p.name.split(".")[0] for p in staged.path.rglob("*.pyc")}
    sources = {p.with_suffix("") for p in staged.path.rglob("*.py")}
    assert compiled == sources  # one bytecode file per module, nothing stale
    requirements = (staged.path / "requirements.txt").read_text()
    assert "functions-framework==" in requirements
    assert "warp-hubspot-sync" not in requirements.replace("hubspot-sync package", "")
    assert json.loads((out / MANIFEST).read_text()) == {"fake_fn": staged.content_hash}


def test_staged_fake_function_loads_and_registers(tmp_path: Path) -> None:
    [staged] = package_functions(tmp_path / "out", fake_sources(tmp_path, "fake_fn"))
    loaded = load_in_isolation(staged.path, "fake_fn")
    assert loaded["signature"] == "http"
    assert Path(loaded["shared"]).resolve().is_relative_to(staged.path.resolve())


def test_staged_bytecode_is_used_after_the_zip_round_trip(tmp_path: Path) -> None:
    """Checked-hash bytecode loads whatever the files' mtimes, as after unzipping."""
    [staged] = package_functions(tmp_path / "out", fake_sources(tmp_path, "fake_fn"))
    for path in staged.path.rglob("*.py"):
        os.utime(path, (1, 1))
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join([str(staged.path), sysconfig.get_paths()["purelib"]]),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    result = subprocess.run(
        [sys.executable, "-S", "-v", "-c", "import main"],
        cwd=staged.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded_from_bytecode = {
        line.split("'")[1]
        for line in result.stderr.splitlines()
        if line.startswith("# code object from") and str(staged.path) in line
    }
    assert str(staged.path / "__pycache__" / f"main.{sys.implementation.cache_tag}.pyc") in (
        loaded_from_bytecode
    )
    assert any("/shared/observability/" in p for p in loaded_from_bytecode)


def test_hash_depends_on_bytes_and_paths_only(tmp_path: Path) -> None:
    sources = fake_sources(tmp_path, "fake_fn")
    [first] = package_functions(tmp_path / "a", sources)
    [again] = package_functions(tmp_path / "b", sources)
    assert first.content_hash == again.content_hash  # other folder, other mtimes
    os.utime(first.path / "main.py", (0, 0))
    assert content_hash(first.path) == first.content_hash
    (first.path / "main.py").write_bytes((first.path / "main.py").read_bytes() + b"\n")
    assert content_hash(first.path) != first.content_hash
    (again.path / "main.py").rename(again.path / "main2.py")
    assert content_hash(again.path) != first.content_hash


def test_restaging_removes_stale_files(tmp_path: Path) -> None:
    sources = fake_sources(tmp_path, "fake_fn")
    [staged] = package_functions(tmp_path / "out", sources)
    (staged.path / "stale.txt").write_text("old")
    [restaged] = package_functions(tmp_path / "out", sources)
    assert not (restaged.path / "stale.txt").exists()
    assert restaged.content_hash == staged.content_hash


def test_folder_without_main_py_is_an_error(tmp_path: Path) -> None:
    sources = fake_sources(tmp_path, "good_fn")
    (sources.functions_dir / "broken_fn").mkdir()
    with pytest.raises(PackagingError, match=r"broken_fn has no main\.py"):
        package_functions(tmp_path / "out", sources)


def test_empty_functions_tree_and_missing_lock_are_errors(tmp_path: Path) -> None:
    with pytest.raises(PackagingError, match="no function folders"):
        package_functions(tmp_path / "out", Sources(functions_dir=tmp_path / "none"))
    sources = fake_sources(tmp_path, "fake_fn")
    missing_lock = Sources(functions_dir=sources.functions_dir, lock_file=tmp_path / "x.lock")
    with pytest.raises(PackagingError, match="lock file not found"):
        package_functions(tmp_path / "out", missing_lock)


def test_requirements_drop_the_project_and_comments(tmp_path: Path) -> None:
    lock = tmp_path / "runtime.lock"
    lock.write_text(
        "# header\nclick==8.1.0\n    # via warp-hubspot-sync (pyproject.toml)\n"
        "-e .\nwarp_hubspot_sync==0.1.0\nhttpx==0.28.1 ; python_version >= '3.8'\n"
    )
    lines = runtime_requirements(lock).splitlines()[1:]
    assert lines == ["click==8.1.0", "httpx==0.28.1 ; python_version >= '3.8'"]


def test_cli_package_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sources = fake_sources(tmp_path, "fake_fn")
    monkeypatch.setattr("shared.packaging.Sources", lambda: sources)
    result = CliRunner().invoke(cli, ["package", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "fake_fn:" in result.output and (tmp_path / "out" / "fake_fn" / "main.py").exists()
    bad = CliRunner().invoke(cli, ["package", "--out", str(tmp_path / "o"), "--function", "nope"])
    assert bad.exit_code != 0 and "nope has no main.py" in bad.output


@pytest.mark.parametrize("name", EXISTING)
def test_every_function_folder_stages_and_loads(name: str, tmp_path: Path) -> None:
    assert (REAL.functions_dir / name / "main.py").is_file(), f"functions/{name} lacks main.py"
    [staged] = package_functions(tmp_path, REAL, names=[name])
    assert (staged.path / "requirements.txt").is_file()
    loaded = load_in_isolation(staged.path, name)
    assert loaded["signature"] == "http"
    # A cold start loads what every request needs, nothing that only some paths use.
    eager = [m for m in loaded["modules"] if m.startswith(LOADED_WHERE_USED)]
    assert eager == [], f"{name} imports at start what only some requests use"
    assert loaded["frozen"] > 0, "main.py's imports ran outside shared.memory.cold_start"


def test_every_terraform_function_has_a_package() -> None:
    declared = set(terraform_functions())
    assert declared, "terraform declares no functions"
    assert declared <= set(EXISTING), f"not in functions/: {sorted(declared - set(EXISTING))}"


def test_repo_root_is_this_checkout() -> None:
    assert (REPO_ROOT / "pyproject.toml").is_file()


def _imported_modules(source: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_no_staged_module_imports_local_tooling(tmp_path: Path) -> None:
    staged = package_functions(tmp_path, REAL)
    offenders = [
        f"{path.relative_to(tmp_path)} imports {module}"
        for function in staged
        for path in function.path.rglob("*.py")
        for module in _imported_modules(path.read_text(encoding="utf-8"))
        if module == "localdev" or module.startswith("localdev.")
    ]
    assert offenders == []
    assert not any((f.path / "localdev").exists() for f in staged)


def test_changing_local_tooling_redeploys_no_function(tmp_path: Path) -> None:
    """Only what runs in production enters a function's hash: editing the emulator,
    the demo or any other local tool leaves every hash as it was."""
    for folder in ("functions", "shared", "localdev"):
        shutil.copytree(
            REPO_ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    sources = Sources(
        functions_dir=tmp_path / "functions",
        shared_dir=tmp_path / "shared",
        lock_file=REAL.lock_file,
    )
    before = {s.name: s.content_hash for s in package_functions(tmp_path / "a", sources)}
    for path in (tmp_path / "localdev").rglob("*.py"):
        path.write_text(path.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    after = {s.name: s.content_hash for s in package_functions(tmp_path / "b", sources)}
    assert after == before
    # The same edit to the deployed package changes every hash: the check can fail.
    with (tmp_path / "shared" / "errors.py").open("a", encoding="utf-8") as handle:
        handle.write("\n# edited\n")
    changed = {s.name: s.content_hash for s in package_functions(tmp_path / "c", sources)}
    assert all(changed[name] != before[name] for name in before)
