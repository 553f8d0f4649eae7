"""Package discovery (everything else is in pyproject.toml).

Every package under ``src/`` is found, so a new one cannot drop out of the wheel; the examples
at the repository's root ship as ``overnight.examples`` (``overnight demo`` copies them).
pyproject.toml cannot say both at once: its ``find`` searches folders, not a second mapping.
"""

from setuptools import find_packages, setup

setup(
    package_dir={"": "src", "overnight.examples": "examples"},
    packages=[*find_packages("src"), "overnight.examples"],
)
