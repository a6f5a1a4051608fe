"""The README's test command (scripts/test) installs every tool a test asks for.

A tool missing from its list only shows on a brand-new machine, where CI=true makes the test
that needs it fail; this catches it on any machine, as soon as the test is written.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "test"
SEARCHED = ("tests", "plugins", "examples", "bench", "angos_core")


def installed_tools() -> dict[str, str]:
    """``tool -> Debian package`` from the ``tools=( "TOOL PACKAGE" ... )`` table."""
    text = SCRIPT.read_text()
    table = re.search(r"^tools=\((.*?)^\)", text, re.MULTILINE | re.DOTALL)
    assert table, "scripts/test has no tools=( ... ) table"
    return dict(re.findall(r'^\s*"(\S+) (\S+)"\s*$', table.group(1), re.MULTILINE))


def required_tools() -> dict[str, Path]:
    """Every literal first argument of ``require_tool(...)`` in the repository's Python."""
    found: dict[str, Path] = {}
    for top in SEARCHED:
        for path in (REPO / top).rglob("*.py"):
            if any(part in (".venv", "build") for part in path.parts):
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (
                    isinstance(node, ast.Call)
                    and getattr(node.func, "id", getattr(node.func, "attr", None)) == "require_tool"
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                ):
                    found.setdefault(str(node.args[0].value), path.relative_to(REPO))
    return found


def test_scripts_test_installs_every_required_tool() -> None:
    required = required_tools()
    assert {"dockerd", "docker", "skopeo", "redis-server"} <= required.keys()
    missing = {tool: str(path) for tool, path in required.items() if tool not in installed_tools()}
    assert not missing, f"add these to the tools table in scripts/test: {missing}"


def test_scripts_test_and_ci_run_are_valid_bash() -> None:
    for script in (SCRIPT, REPO / ".ci" / "run"):
        proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, f"{script}: {proc.stderr}"
    assert "scripts/test" in (REPO / ".ci" / "run").read_text()
