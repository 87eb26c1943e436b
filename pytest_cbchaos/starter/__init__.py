"""``cbchaos init [DIR]``: a starter set for a project (README, "Install into your project").

Writes two shipped scenarios into ``scenarios/``, a ``conftest.py`` showing fixture overrides, a starter
test module and a GitHub Actions workflow that runs ``cbchaos run`` and uploads the report. It never
overwrites: when one of the files exists, nothing is written and the error names it.
"""

from __future__ import annotations

from pathlib import Path

from pytest_cbchaos.scenario.builtin import builtin_dir

HERE = Path(__file__).parent
TEMPLATES = {"conftest.py": "conftest.py.tmpl", "test_chaos_example.py": "test_chaos_example.py.tmpl",
             ".github/workflows/cbchaos.yml": "cbchaos.yml.tmpl"}
SCENARIOS = ("breaker-redis-latency.yaml", "breaker-redis-down.yaml")  # short, Redis and the proxy only


class StarterExists(FileExistsError):
    """A file of the starter set is already there (nothing was written)."""


def starter_files(dest: Path) -> dict[Path, str]:
    """Destination path -> content, templates and shipped scenarios alike."""
    files = {dest / name: (HERE / template).read_text(encoding="utf-8") for name, template in TEMPLATES.items()}
    source = builtin_dir()
    files.update({dest / "scenarios" / name: (source / name).read_text(encoding="utf-8") for name in SCENARIOS})
    return files


def write_starter(dest: Path) -> list[Path]:
    """Write the starter set into ``dest``; :class:`StarterExists` names the first file already present."""
    files = starter_files(dest)
    existing = [p for p in files if p.exists()]
    if existing:
        raise StarterExists(f"{existing[0]} exists; cbchaos init never overwrites (move it away or pick another "
                            f"DIR){f', nor {len(existing) - 1} more' if len(existing) > 1 else ''}")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return sorted(files)
