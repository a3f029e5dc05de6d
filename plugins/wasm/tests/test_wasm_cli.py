"""`sitegate wasm publish` and `sitegate wasm promote`: sign a module into a registry; promote a shadow
with one command that edits only the step."""

from __future__ import annotations

import argparse
import textwrap

import yaml

from sitegate.registry.keys import write_key_pair

from plugins.wasm import cli
from plugins.wasm.shadow import promote_step
from wasm_helpers import wasm_bytes, wat

SITE = textwrap.dedent("""\
    site: t/promote
    routes:
      # averaged temperatures
      - name: avg
        from: ["sim.*/temp"]
        through:
          - deadband: {abs: 0.1}
          - wasm:
              module: acme/moving_average
              version: "1.0.0"   # pinned
              config: {window: 5}
              shadow:
                module: acme/moving_average
                version: "1.1.0"
          - window: {every: 1m}
      - name: flow
        from: ["x/*"]
        through: [{wasm: {module: acme/ma, version: "1.0.0", shadow: {module: acme/ma, version: "2.0.0", config: {window: 3}}, config: {window: 5}}}]
    """)


def promote(path, route, **kw):
    return cli.promote(argparse.Namespace(site=path, route=route, step=kw.get("step"), dry_run=False))


def test_promote_edits_only_the_step_in_a_block_mapping(tmp_path, capsys):
    path = tmp_path / "site.yaml"
    path.write_text(SITE)
    assert promote(path, "avg") == 0
    text = path.read_text()
    doc = yaml.safe_load(text)
    assert doc["routes"][0]["through"][1] == {"wasm": {"module": "acme/moving_average", "version": "1.1.0",
                                                      "config": {"window": 5}}}
    assert doc["routes"][0]["through"][2] == {"window": {"every": "1m"}}
    assert "# averaged temperatures" in text and '"1.1.0"   # pinned' in text        # comments stay
    assert doc["routes"][1] == yaml.safe_load(SITE)["routes"][1]                    # other routes untouched
    assert "now runs acme/moving_average 1.1.0" in capsys.readouterr().out


def test_promote_in_a_flow_mapping_takes_the_shadow_config(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text(SITE)
    assert promote(path, "flow") == 0
    step = yaml.safe_load(path.read_text())["routes"][1]["through"][0]["wasm"]
    assert step == {"module": "acme/ma", "version": "2.0.0", "config": {"window": 3}}
    assert step == promote_step(yaml.safe_load(SITE)["routes"][1]["through"][0]["wasm"])


def test_promote_without_a_shadow_fails_and_leaves_the_file(tmp_path, capsys):
    path = tmp_path / "site.yaml"
    path.write_text(SITE)
    promote(path, "avg")
    before = path.read_text()
    assert promote(path, "avg") == 1
    assert "has 0 wasm steps with a shadow" in capsys.readouterr().err
    assert path.read_text() == before


def test_publish_signs_a_wat_module_that_a_site_then_verifies(lab, tmp_path, capsys):
    write_key_pair(lab.keys["acme"], tmp_path / "acme.key")
    online = tmp_path / "online"
    for name in ("snapshot", "timestamp"):
        write_key_pair(lab.keys[name], online / f"{name}.key")
    args = argparse.Namespace(module=wat("threshold.wat"), name="limits", version="0.1.0", key=tmp_path / "acme.key",
                              registry=lab.repo.path, online_keys=online, description="", replace=False)
    assert cli.publish(args) == 0
    assert "plugins/acme/limits-0.1.0.wasm published" in capsys.readouterr().out
    verified = lab.store().fetch("acme/limits", "0.1.0")
    assert verified.data == wasm_bytes("threshold.wat")
