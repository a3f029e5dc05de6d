"""Who is subscribed to what: a tree of topic filters, so matching one topic costs a walk
down its levels instead of a test against every filter of every client.

Used by the gateway (gateway.py) for commands, wills and node-to-node publishes; matching
follows MQTT (`+` one level, `#` the rest, `$` topics only by explicit filters), as
payload.topic_matches does for single filters.
"""

from __future__ import annotations


class _Node:
    __slots__ = ("children", "subscribers")

    def __init__(self):
        self.children: dict[str, _Node] = {}
        self.subscribers: dict[str, int] = {}     # client id -> QoS


class SubscriptionTree:
    def __init__(self):
        self._root = _Node()
        self.count = 0          # (filter, client) pairs held

    def add(self, filter_: str, client: str, qos: int) -> None:
        node = self._root
        for level in filter_.split("/"):
            nxt = node.children.get(level)
            if nxt is None:
                nxt = node.children[level] = _Node()
            node = nxt
        if client not in node.subscribers:
            self.count += 1
        node.subscribers[client] = qos

    def remove(self, filter_: str, client: str) -> bool:
        path = [self._root]
        for level in filter_.split("/"):
            nxt = path[-1].children.get(level)
            if nxt is None:
                return False
            path.append(nxt)
        if path[-1].subscribers.pop(client, None) is None:
            return False
        self.count -= 1
        # Prune empty branches so a churn of filters leaves nothing behind.
        levels = filter_.split("/")
        for i in range(len(levels), 0, -1):
            node = path[i]
            if node.subscribers or node.children:
                break
            del path[i - 1].children[levels[i - 1]]
        return True

    def match(self, topic: str) -> dict[str, int]:
        """client id -> the highest QoS among its filters that match `topic`."""
        out: dict[str, int] = {}
        if not self.count:
            return out
        levels = topic.split("/")
        dollar = topic.startswith("$")

        def take(subs: dict[str, int]) -> None:
            for client, qos in subs.items():
                if out.get(client, -1) < qos:
                    out[client] = qos

        def walk(node: _Node, i: int) -> None:
            children = node.children
            wild = not (dollar and i == 0)
            hash_ = children.get("#") if wild else None
            if hash_ is not None:                  # '#' also matches the parent level
                take(hash_.subscribers)
            if i == len(levels):
                take(node.subscribers)
                return
            exact = children.get(levels[i])
            if exact is not None:
                walk(exact, i + 1)
            plus = children.get("+") if wild else None
            if plus is not None:
                walk(plus, i + 1)

        walk(self._root, 0)
        return out
