"""What applying a site would change: fingerprints, the plan, and `sitegate diff`."""

from __future__ import annotations

import json
from sitegate.cli import main
from sitegate.config import load_site
from sitegate.config.changes import applied_state, entry_fingerprint, plan_changes, state_dir_for
from sitegate.config.schema import EntrySpec, Route, Site


def _site(*entries: EntrySpec, routes=()) -> Site:
    return Site(site="s", entries=list(entries), routes=list(routes))


def test_fingerprint_changes_with_what_needs_a_reload_and_not_with_the_name():
    base = EntrySpec(id="a", domain="sensor", config={"port": 1, "host": "h"})
    same_config_other_order = EntrySpec(id="a", domain="sensor", config={"host": "h", "port": 1}, name="Press")
    assert entry_fingerprint(base) == entry_fingerprint(same_config_other_order)
    for changed in (EntrySpec(id="a", domain="sensor", config={"port": 2, "host": "h"}),
                    EntrySpec(id="a", domain="other", config={"port": 1, "host": "h"}),
                    EntrySpec(id="a", domain="sensor", config={"port": 1, "host": "h"}, version=2),
                    EntrySpec(id="a", domain="sensor", config={"port": 1, "host": "h"}, disabled=True)):
        assert entry_fingerprint(changed) != entry_fingerprint(base)


def test_plan_sorts_entries_into_added_removed_reloaded_unchanged():
    old = applied_state(_site(EntrySpec(id="keep", domain="d"), EntrySpec(id="edit", domain="d"),
                              EntrySpec(id="drop", domain="d"), routes=[Route(from_=["*"], to=["keep"])]))
    new = _site(EntrySpec(id="keep", domain="d"), EntrySpec(id="edit", domain="d", config={"x": 1}),
                EntrySpec(id="new", domain="d"), routes=[Route(from_=["*"], to=["keep"])])
    changes = plan_changes(old, new)
    assert (changes.added, changes.removed, changes.reloaded, changes.unchanged) == (
        ("new",), ("drop",), ("edit",), ("keep",))
    assert changes.routes_changed is False
    assert plan_changes(old, _site(*new.entries, routes=[Route(from_=["*"], to=["edit"])])).routes_changed


def test_nothing_running_means_everything_is_added():
    changes = plan_changes(None, _site(EntrySpec(id="a", domain="d")))
    assert changes.added == ("a",) and not changes.removed and not changes.reloaded


def test_a_changed_secret_reloads_the_entry_but_never_appears_in_the_applied_state(write):
    write("secrets.yaml", "pw: first-password\n")
    site = write("site.yaml", "site: s\nentries:\n  - {id: up, domain: uplink, config: {password: !secret pw}}\n")
    before = applied_state(load_site(site).site)
    write("secrets.yaml", "pw: second-password\n")
    after = load_site(site).site
    assert plan_changes(before, after).reloaded == ("up",)
    assert "password" not in json.dumps(before)


def test_state_dir_defaults_beside_the_site_file_and_follows_runtime_state_dir(write):
    site = write("site.yaml", "site: s\n")
    assert state_dir_for(load_site(site)) == site.parent / ".sitegate"
    site = write("other.yaml", "site: s\nruntime: {state_dir: var/state}\n")
    assert state_dir_for(load_site(site)) == site.parent / "var/state"


def _diff(capsys, site, *extra):
    status = main(["diff", str(site), *extra])
    out = capsys.readouterr()
    return status, out.out


def test_sitegate_diff_shows_the_changes_against_the_running_site_and_changes_nothing(write, capsys):
    old = write("old.yaml", """
        site: s
        entries:
          - {id: keep, domain: sensor, config: {port: 1}}
          - {id: edit, domain: sensor, config: {port: 2}}
          - {id: drop, domain: sensor, config: {port: 3}}
        """)
    state = old.parent / ".sitegate"
    state.mkdir()
    applied = json.dumps({**applied_state(load_site(old).site), "applied_at": 0})
    (state / "applied.json").write_text(applied)
    new = write("site.yaml", """
        site: s
        entries:
          - {id: keep, domain: sensor, config: {port: 1}}
          - {id: edit, domain: sensor, config: {port: 20}}
          - {id: new, domain: sensor, config: {port: 4}}
        """)
    status, out = _diff(capsys, new, "--exit-code")
    assert status == 1, out
    lines = [line.split() for line in out.splitlines()]
    assert ["+", "added", "new"] in lines and ["-", "removed", "drop"] in lines
    assert ["~", "reloaded", "edit"] in lines and ["=", "unchanged", "keep"] in lines
    assert (state / "applied.json").read_text() == applied
    assert _diff(capsys, old, "--exit-code")[0] == 0


def test_sitegate_diff_without_a_running_site_says_so(write, capsys):
    site = write("site.yaml", "site: s\nentries: [{id: a, domain: sensor}]\n")
    status, out = _diff(capsys, site)
    assert status == 0
    assert "nothing is running there" in out and "+ added     a" in out
