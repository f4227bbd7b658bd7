"""The three dependency lists agree: pyproject.toml (direct pins), environment.yml (conda users)
and requirements.txt (the full lock that `make setup` installs)."""

import re
import tomllib

import yaml
from conftest import ROOT


def _pins(lines):
    out = {}
    for line in lines:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)==([^\s;#]+)\s*", line)
        assert m, f"not an exact pin: {line!r}"
        out[m[1].lower().replace("_", "-")] = m[2]
    return out


def test_environment_yml_matches_pyproject():
    project = _pins(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(pip) == project
    assert "python=3.11" in env["dependencies"]


def test_lock_contains_every_direct_pin():
    project = _pins(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    lock = _pins(
        [
            line
            for line in (ROOT / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
    )
    for name, version in project.items():
        assert lock.get(name) == version, f"{name}: pyproject pins {version}, requirements.txt has {lock.get(name)}"
