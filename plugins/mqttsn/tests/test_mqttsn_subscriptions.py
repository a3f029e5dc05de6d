"""The subscription tree matches exactly like testing every filter one by one."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from plugins.mqttsn.payload import topic_matches
from plugins.mqttsn.subscriptions import SubscriptionTree

level = st.sampled_from(["a", "b", "", "$s"])
topics = st.lists(level, min_size=1, max_size=4).map("/".join)
filters = st.lists(st.sampled_from(["a", "b", "", "$s", "+"]), min_size=1, max_size=4).flatmap(
    lambda ls: st.sampled_from([ls, ls + ["#"], ["#"]])).map("/".join)
subs = st.lists(st.tuples(filters, st.sampled_from(["c1", "c2", "c3"]), st.integers(0, 2)), max_size=12)


@settings(max_examples=400, deadline=None)
@given(subs, st.lists(st.integers(0, 11), max_size=4), topics)
def test_tree_matches_like_each_filter(entries, removals, topic):
    tree = SubscriptionTree()
    held: dict[tuple[str, str], int] = {}
    for f, client, qos in entries:
        tree.add(f, client, qos)
        held[(f, client)] = qos
    for i in removals:
        if i < len(entries):
            f, client, _ = entries[i]
            assert tree.remove(f, client) == ((f, client) in held)
            held.pop((f, client), None)
    expected: dict[str, int] = {}
    for (f, client), qos in held.items():
        if topic_matches(f, topic):
            expected[client] = max(expected.get(client, -1), qos)
    assert tree.match(topic) == expected
    assert tree.count == len(held)


def test_removing_everything_leaves_an_empty_tree():
    tree = SubscriptionTree()
    for i in range(100):
        tree.add(f"n{i}/cmd/#", f"c{i}", 1)
    for i in range(100):
        tree.remove(f"n{i}/cmd/#", f"c{i}")
    assert tree.count == 0 and not tree._root.children


def test_cached_results_follow_changes():
    tree = SubscriptionTree()
    assert tree.match("a/b") == {}
    tree.add("a/+", "c1", 1)
    assert tree.match("a/b") == {"c1": 1}
    tree.add("a/b", "c2", 0)
    assert tree.match("a/b") == {"c1": 1, "c2": 0}
    tree.remove("a/+", "c1")
    assert tree.match("a/b") == {"c2": 0}
