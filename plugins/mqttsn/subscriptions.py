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
    def __init__(self, cache_size: int = 4096):
        self._root = _Node()
        self.count = 0          # (filter, client) pairs held
        # Results per topic until the subscriptions change: most topics are published
        # again and again, and subscriptions change rarely. Bounded: cleared when full.
        self._cache: dict[str, dict[str, int]] = {}
        self._cache_size = cache_size

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
        self._cache.clear()

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
        self._cache.clear()
        # Prune empty branches so a churn of filters leaves nothing behind.
        levels = filter_.split("/")
        for i in range(len(levels), 0, -1):
            node = path[i]
            if node.subscribers or node.children:
                break
            del path[i - 1].children[levels[i - 1]]
        return True

    def match(self, topic: str) -> dict[str, int]:
        """client id -> the highest QoS among its filters that match `topic` (do not modify it)."""
        cached = self._cache.get(topic)
        if cached is not None:
            return cached
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
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[topic] = out
        return out
