"""validate_site beyond the bad-input corpus: pins, disabled entries, migration, partial sites."""

from __future__ import annotations


def _problems(issues):
    return [(i.line, i.path, i.message) for i in issues]


def test_a_pin_the_available_version_does_not_satisfy_is_reported_at_the_pin(write, check):
    site = write("site.yaml", """
        site: x
        plugins:
          sensor: ">=2,<3"
          uplink: "1.0.0"
          scale: "one"
        """)
    assert _problems(check(site)) == [
        (3, "plugins.sensor", "pinned to '>=2,<3', but the available sensor is 1.0.0"),
        (5, "plugins.scale", "expected a version (1.0.4) or a range ('>=1.2,<2'), got 'one'")]


def test_a_disabled_entry_may_name_an_integration_that_is_not_installed(write, check):
    site = write("site.yaml", """
        site: x
        entries:
          - {id: later, domain: not_installed_yet, disabled: true}
          - {id: idle, domain: sensor, disabled: true, config: {port: nine}}
        """)
    # ...but when its integration is there, its config is still checked
    assert _problems(check(site)) == [(4, "entries[1].config.port", "expected int, got str 'nine'")]


def test_migrated_config_is_checked_after_migration(write, check):
    site = write("site.yaml", """
        site: x
        entries:
          - {id: old, domain: sensor, version: 1, config: {port: 1, addr: a}}
          - {id: new, domain: sensor, version: 2, config: {port: 1, addr: a}}
        """)
    # version 2 is current: `addr` is no longer a key there
    assert [(p, m.split(";")[0]) for _, p, m in _problems(check(site))] == [
        ("entries[1].config.addr", "unknown key 'addr'")]


def test_entries_are_checked_even_when_another_part_of_the_site_is_broken(write, check):
    site = write("site.yaml", """
        site: x
        api: {port: high}
        entries:
          - {id: a, domain: sensor, config: {port: nine}}
          - {id: b, domian: sensor}
          - {id: c, domain: sensor, config: {port: 1}}
          - {id: c, domain: sensor, config: {port: 2}}
        """)
    got = [(line, path) for line, path, _ in _problems(check(site))]
    # in reading order, top to bottom
    assert got == [(2, "api.port"), (4, "entries[0].config.port"), (5, "entries[1]"), (5, "entries[1].domian"),
                   (7, "entries[3].id")]


def test_a_processor_integration_needs_no_entry_to_be_used_in_a_route(write, check):
    site = write("site.yaml", """
        site: x
        entries:
          - {id: up, domain: uplink, config: {host: h}}
        routes:
          - {from: "*", through: [{scale: {factor: 2}}], to: up}
        """)
    assert check(site) == []


def test_an_id_yaml_reads_as_a_boolean_gets_a_hint(write, check):
    site = write("site.yaml", "site: x\nentries:\n  - {id: off, domain: sensor, config: {port: 1}}\n")
    (issue,) = check(site)
    assert (issue.line, issue.path) == (3, "entries[0].id")
    assert issue.message.startswith("expected an id, got False: YAML reads yes/no/on/off")
