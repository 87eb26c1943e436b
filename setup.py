"""The shipped scenarios live in the repository's ``scenarios/`` (``make chaos`` runs them there); the build
copies them into the package as ``pytest_cbchaos/scenarios/`` so an installed wheel has them too
(``cbchaos run --builtin``, ``cbchaos init``). Everything else is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SOURCE = Path(__file__).parent / "scenarios"


class BuildPyWithScenarios(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib, "pytest_cbchaos", "scenarios")
        target.mkdir(parents=True, exist_ok=True)
        for path in sorted(SOURCE.glob("*.yaml")):
            shutil.copy2(path, target / path.name)


setup(cmdclass={"build_py": BuildPyWithScenarios})
