"""Fixtures for site-file tests: tiny throwaway integrations and a check helper.

The integrations are written into a temporary folder per session, as a plugin
author's --dev-plugins folder would be: manifest.json plus __init__.py.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from sitegate.config.validate import check_site
from sitegate.loader import DevFolderSource, Loader

HERE = Path(__file__).parent
BAD = HERE / "bad"

SENSOR = '''
import attrs
from sitegate.hookspecs import hookimpl
from sitegate.structure import Duration

@attrs.frozen
class Channel:
    name: str
    scale: float = 1.0

    def __attrs_post_init__(self):
        if self.scale == 0:
            raise ValueError("scale: expected a number other than 0")   # names its key, as plugins do


@attrs.frozen
class SensorConfig:
    config_version = 2
    port: int
    host: str = "localhost"
    interval: Duration = Duration(1)
    channels: list[Channel] = attrs.field(factory=list)
    labels: dict[str, int] = attrs.field(factory=dict)

    def __attrs_post_init__(self):
        if self.interval <= 0:
            raise ValueError(f"interval: expected a positive duration, got {float(self.interval):g}")

@hookimpl
def config_schema():
    return SensorConfig

@hookimpl
def migrate_config(from_version, config):
    # version 1 called the host "addr"
    config = dict(config)
    if "addr" in config:
        config["host"] = config.pop("addr")
    return config
'''

UPLINK = '''
import attrs
from sitegate.hookspecs import hookimpl

@attrs.frozen
class UplinkConfig:
    host: str
    password: str = ""

@hookimpl
def config_schema():
    return UplinkConfig
'''

SCALE = '''
import attrs
from sitegate.hookspecs import hookimpl
from sitegate.plugins import ProcessorType

@attrs.frozen
class ScaleParams:
    factor: float
    offset: float = 0.0

@hookimpl
def processor_types():
    return {"scale": ProcessorType("scale", ScaleParams, lambda params, ctx: None)}
'''

PLAIN = '''
from sitegate.hookspecs import hookimpl
'''

WRONG_SIGNATURE = '''
from sitegate.hookspecs import hookimpl

@hookimpl
def migrate_config(from_version, config, entry_id):
    return config
'''

BROKEN_IMPORT = '''
from sitegate.hookspecs import hookimpl
import a_module_nobody_installed
'''

INTEGRATIONS = {
    # domain: (kinds, requires, dependencies, code)
    "sensor": (["adapter"], ">=1.0,<2", [], SENSOR),
    "uplink": (["sink"], ">=1.0,<2", [], UPLINK),
    "scale": (["processor"], ">=1.0,<2", [], SCALE),
    "loop_a": (["adapter"], ">=1.0,<2", ["loop_b"], PLAIN),
    "loop_b": (["adapter"], ">=1.0,<2", ["loop_a"], PLAIN),
    "needy": (["adapter"], ">=1.0,<2", ["ghost"], PLAIN),
    "future": (["adapter"], ">=2.0,<3", [], PLAIN),
    "wrongsig": (["adapter"], ">=1.0,<2", [], WRONG_SIGNATURE),
    "noimport": (["adapter"], ">=1.0,<2", [], BROKEN_IMPORT),
}


def write_integration(folder: Path, domain: str, kinds: list[str], requires: str,
                      dependencies: list[str], code: str, **extra: object) -> Path:
    target = folder / domain
    target.mkdir(parents=True, exist_ok=True)
    (target / "manifest.json").write_text(json.dumps({
        "domain": domain, "name": domain.title(), "version": "1.0.0", "kinds": kinds,
        "requires": requires, "dependencies": dependencies, **extra}))
    (target / "__init__.py").write_text(textwrap.dedent(code))
    return target


@pytest.fixture(scope="session")
def plugins_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("plugins")
    for domain, (kinds, requires, deps, code) in INTEGRATIONS.items():
        write_integration(folder, domain, kinds, requires, deps, code)
    # A manifest with a misspelt key: refused before any of its code is imported.
    write_integration(folder, "badmanifest", ["adapter"], ">=1.0,<2", [], PLAIN, iot_clas="local_push")
    return folder


@pytest.fixture
def check(plugins_dir):
    """check(site_path) -> the issues `sitegate check --dev-plugins <plugins>` would print."""
    def run(site: Path):
        loaded, issues = check_site(site, Loader(DevFolderSource(plugins_dir, warn=False)))
        return issues
    return run


@pytest.fixture
def write(tmp_path):
    """write("name.yaml", text) -> path: a file in this test's folder (text dedented)."""
    def put(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path
    return put
