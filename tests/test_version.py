"""The version recorded beside every artifact is the package's own."""
import tomllib
from pathlib import Path

import mcu_ray
from mcu_ray.version import __version__


def test_the_version_is_the_one_the_package_is_installed_as():
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    assert __version__ == project["version"] == mcu_ray.__version__
