"""Test integration: config version 2 renamed `addr` to `host`."""
import attrs
from sitegate.errors import MigrationError
from sitegate.hookspecs import hookimpl

@attrs.frozen
class Config:
    config_version = 2
    host: str

@hookimpl
def config_schema():
    return Config

@hookimpl
def migrate_config(from_version, config):
    if "addr" not in config:
        raise MigrationError("version 1 config has no 'addr'")
    config["host"] = config.pop("addr")
    return config

@hookimpl
async def setup_entry(entry):
    entry.data["host"] = entry.config.host
