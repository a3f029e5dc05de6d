"""Composing a site from fragments and layers: !include, !include_dir_merge_list, extends."""

from __future__ import annotations

import pytest

from sitegate.config import load_site
from sitegate.errors import ConfigError


def test_include_brings_in_a_fragment_with_its_own_places(write):
    write("lines/press.yaml", """
        id: press
        domain: sensor
        config: {port: 502}
        """)
    site = write("site.yaml", """
        site: plant-a
        entries:
          - !include lines/press.yaml
        api: !include api.yaml
        """)
    write("api.yaml", "port: 9000\n")
    loaded = load_site(site)
    assert [e.id for e in loaded.site.entries] == ["press"]
    assert loaded.site.api.port == 9000
    assert loaded.sources.where("entries[0].config.port") == (str(site.parent / "lines/press.yaml"), 3)
    assert set(loaded.files) == {site, site.parent / "lines/press.yaml", site.parent / "api.yaml"}


def test_include_dir_merge_list_concatenates_every_yaml_file_in_name_order(write):
    write("entries/b_uplink.yaml", """
        - id: uplink
          domain: uplink
          config: {host: broker}
        """)
    write("entries/a_sensors.yaml", """
        - {id: s1, domain: sensor, config: {port: 1}}
        - {id: s2, domain: sensor, config: {port: 2}}
        """)
    write("entries/sub/c_more.yaml", "- {id: s3, domain: sensor, config: {port: 3}}\n")
    write("entries/.hidden.yaml", "- {id: hidden, domain: sensor}\n")
    write("entries/empty.yaml", "# nothing yet\n")
    site = write("site.yaml", """
        site: plant-a
        entries: !include_dir_merge_list entries/
        """)
    loaded = load_site(site)
    assert [e.id for e in loaded.site.entries] == ["s1", "s2", "uplink", "s3"]
    assert site.parent / "entries" in loaded.files   # so `run` notices a fragment added later
    assert loaded.sources.where("entries[2].config.host") == (str(site.parent / "entries/b_uplink.yaml"), 3)


def test_include_dir_merge_list_refuses_a_file_that_is_not_a_list(write):
    write("entries/one.yaml", "id: s1\ndomain: sensor\n")
    site = write("site.yaml", "site: x\nentries: !include_dir_merge_list entries\n")
    with pytest.raises(ConfigError) as exc:
        load_site(site)
    issue = exc.value.issues[0]
    assert (issue.file, issue.line) == (str(site.parent / "entries/one.yaml"), 1)
    assert "expects each file to hold a list, got mapping" in issue.message


def test_overlay_overrides_entries_by_id_and_deep_merges_config(write):
    write("templates/line.yaml", """
        site: template
        durability: power-loss
        entries:
          - id: press
            domain: sensor
            config: {port: 502, host: press.local, interval: 1s}
          - id: oven
            domain: sensor
            config: {port: 503}
          - id: uplink
            domain: uplink
            config: {host: broker.example}
        routes:
          - name: to-cloud
            from: ["*"]
            to: [uplink]
        """)
    site = write("plant-a/line-3.yaml", """
        extends: [../templates/line.yaml]
        site: plant-a/line-3
        entries:
          - id: press
            config: {host: press.line3.plant-a, interval: null}
          - id: oven
            remove: true
          - id: extra
            domain: sensor
            config: {port: 1}
        routes:
          - name: to-cloud
            priority: critical
        """)
    loaded = load_site(site)
    s = loaded.site
    assert s.site == "plant-a/line-3" and s.durability == "power-loss"
    assert [e.id for e in s.entries] == ["press", "uplink", "extra"]
    # deep merge: port from the template, host from the overlay, interval removed by null
    assert s.entries[0].domain == "sensor"
    assert s.entries[0].config == {"port": 502, "host": "press.line3.plant-a"}
    assert len(s.routes) == 1 and s.routes[0].priority == "critical" and s.routes[0].to == ["uplink"]
    # places follow the layer each value came from
    assert loaded.sources.where("entries[0].config.port")[0].endswith("templates/line.yaml")
    assert loaded.sources.where("entries[0].config.host")[0].endswith("line-3.yaml")


def test_layers_apply_in_order_later_wins(write):
    write("a.yaml", "site: a\napi: {port: 1, host: a}\n")
    write("b.yaml", "api: {port: 2}\n")
    site = write("site.yaml", "extends: [a.yaml, b.yaml]\nsite: final\n")
    api = load_site(site).site.api
    assert (api.port, api.host) == (2, "a")


def test_removing_an_entry_no_layer_defines_is_an_error(write):
    write("base.yaml", "site: a\nentries: [{id: press, domain: sensor}]\n")
    site = write("site.yaml", "extends: [base.yaml]\nentries:\n  - {id: oven, remove: true}\n")
    with pytest.raises(ConfigError) as exc:
        load_site(site)
    (issue,) = exc.value.issues
    assert (issue.file, issue.line, issue.path) == (str(site), 3, "entries[0]")
    assert "nothing to remove: no id 'oven'" in issue.message


def test_extends_cycle_is_refused_naming_the_chain(write):
    write("a.yaml", "extends: [b.yaml]\nsite: a\n")
    write("b.yaml", "extends: [a.yaml]\n")
    site = write("site.yaml", "extends: [a.yaml]\n")
    with pytest.raises(ConfigError) as exc:
        load_site(site)
    messages = [i.message for i in exc.value.issues]
    assert any(m.startswith("include cycle: ") and "a.yaml -> " in m and m.endswith("a.yaml") for m in messages), messages


def test_missing_base_layer_names_the_extends_line(write):
    site = write("site.yaml", "site: x\nextends:\n  - base.yaml\n")
    with pytest.raises(ConfigError) as exc:
        load_site(site)
    (issue,) = exc.value.issues
    assert (issue.file, issue.line, issue.path) == (str(site), 3, "extends[0]")
    assert issue.message.startswith("extends base.yaml: no such file")


def test_secret_in_an_included_file_is_looked_up_beside_it_then_up_to_the_site(write):
    write("secrets.yaml", "pw: top-secret\n")
    write("parts/uplink.yaml", "id: up\ndomain: uplink\nconfig: {host: b, password: !secret pw}\n")
    site = write("site.yaml", "site: x\nentries: [!include parts/uplink.yaml]\n")
    loaded = load_site(site)
    assert loaded.site.entries[0].config["password"] == "top-secret"
    assert loaded.secrets == frozenset({"top-secret"})
    assert site.parent / "secrets.yaml" in loaded.files


def test_every_problem_in_every_file_is_reported_at_once(write):
    write("secrets.yaml", "a: 1\n")
    write("frag.yaml", "id: f\ndomain: sensor\nversion: two\n")
    site = write("site.yaml", """
        site: x
        entries:
          - !include frag.yaml
          - {id: s, domain: sensor, config: {password: !secret b}}
        api: {port: no}
        durability: sometimes
        """)
    with pytest.raises(ConfigError) as exc:
        load_site(site)
    got = {(i.file.rsplit("/", 1)[-1], i.line, i.path) for i in exc.value.issues}
    assert got == {("site.yaml", 4, "entries[1].config.password"), ("frag.yaml", 3, "entries[0].version"),
                   ("site.yaml", 5, "api.port"), ("site.yaml", 6, "durability")}


def test_yaml_merge_keys_may_override_but_a_key_written_twice_is_an_error(write):
    site = write("site.yaml", """
        site: x
        defaults: &sensor {domain: sensor, config: {port: 1}}
        entries:
          - <<: *sensor
            id: a
            config: {port: 2}
        """)
    with pytest.raises(ConfigError) as exc:
        load_site(site)
    # `defaults` is not a site key; the override of `config` is not reported as a duplicate
    assert [(i.line, i.path, i.message.split(";")[0]) for i in exc.value.issues] == [
        (2, "defaults", "unknown key 'defaults'")]


def test_an_unknown_tag_is_named_with_the_known_ones(write):
    site = write("site.yaml", "site: x\napi:\n  host: !secrets host\n")
    with pytest.raises(ConfigError) as exc:
        load_site(site)
    (issue,) = exc.value.issues
    assert (issue.line, issue.path) == (3, "api.host")
    assert issue.message.startswith("unknown tag !secrets; sitegate knows !secret, !include")


def test_route_keys_naming_one_thing_accept_a_single_text(write):
    site = write("site.yaml", "site: x\nroutes:\n  - {from: 'press/*', to: uplink}\n")
    route = load_site(site).site.routes[0]
    assert (route.from_, route.to) == (["press/*"], ["uplink"])


def test_text_where_a_list_belongs_is_refused_not_split_into_letters(write):
    site = write("site.yaml", "site: x\nentries: {id: a}\nruntime:\n  retry_backoff: 5s\n")
    with pytest.raises(ConfigError) as exc:
        load_site(site)
    assert [(i.line, i.path, i.message) for i in exc.value.issues] == [
        (2, "entries", "expected a list, got mapping {'id': 'a'}"),
        (4, "runtime.retry_backoff", "expected a list, got text '5s'")]


def test_include_dir_merge_named_merges_mappings_and_refuses_a_key_defined_twice(write):
    write("pins/a.yaml", "simulator: '>=1.0,<2'\n")
    write("pins/b.yaml", "mqtt: 1.0.0\n")
    site = write("site.yaml", "site: x\nplugins: !include_dir_merge_named pins\n")
    assert load_site(site).site.plugins == {"simulator": ">=1.0,<2", "mqtt": "1.0.0"}
    write("pins/c.yaml", "# a later pin\n# for the same plugin\nmqtt: 1.0.1\n")
    with pytest.raises(ConfigError) as exc:
        load_site(site)
    (issue,) = exc.value.issues
    assert (issue.file, issue.line) == (str(site.parent / "pins/c.yaml"), 3)
    assert issue.message == f"duplicate key 'mqtt' (also in {site.parent / 'pins/b.yaml'}:1)"


def test_yaml_syntax_error_in_an_included_file_names_that_file_and_its_line(write):
    write("frag.yaml", "id: a\ndomain: [sensor\n")
    site = write("site.yaml", "site: x\nentries:\n  - !include frag.yaml\n")
    with pytest.raises(ConfigError) as exc:
        load_site(site)
    (issue,) = exc.value.issues
    assert issue.file == str(site.parent / "frag.yaml") and issue.line == 3 and issue.path == "entries[0]"
    assert issue.message.startswith("YAML syntax error: ")


def test_a_broken_secrets_file_is_named_with_its_line(write):
    write("secrets.yaml", "good: 1\nbad: [unclosed\n")
    site = write("site.yaml", "site: x\napi: {host: !secret good}\n")
    with pytest.raises(ConfigError) as exc:
        load_site(site)
    (issue,) = exc.value.issues
    assert issue.file == str(site.parent / "secrets.yaml") and issue.line == 3
    assert issue.message.startswith("YAML syntax error")


def test_a_template_outside_the_site_folder_finds_secrets_in_the_site_folder_not_above(write, tmp_path):
    write("secrets.yaml", "pw: above-the-site\n")                      # must not be used
    write("templates/uplink.yaml", "entries: [{id: up, domain: uplink, config: {password: !secret pw}}]\n")
    write("sites/a/secrets.yaml", "pw: site-a-password\n")
    site = write("sites/a/site.yaml", "extends: [../../templates/uplink.yaml]\nsite: a\n")
    assert load_site(site).site.entries[0].config["password"] == "site-a-password"
