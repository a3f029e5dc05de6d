"""Every runnable block in docs/*.md is executed, in order, as a reader would type it.

The convention (docs/architecture.md, "Docs that run"), on a fenced block's info string:
- ```` ```yaml title=site.yaml ```` writes the block to that file in the doc's scratch folder;
- ```` ```sh run ```` runs the block with ``bash -e`` there and needs exit status 0;
  ``run=fails`` needs a non-zero status; ``expect="text"`` needs the text in the output;
- ```` ```sh run=background until="text" ```` starts a long-running command (``sitegate run``),
  waits for the text, runs the rest of the doc beside it, then stops it with SIGTERM (exit 0);
- ```` ```python run ```` runs the block with this Python;
- ```` ```json ws ```` holds WebSocket API exchanges (``→`` sent, ``←`` answered), which
  tests/docs/test_websocket_api_examples.py sends to a real site and checks (docs/websocket-api.md);
- ```` ```sh tested="tests/FILE.py::test_name" ```` is a command a test of its own runs (one that
  cannot run here as written, such as ``make run``: make dies of the SIGTERM that stops the site);
  that test must exist and name every word of the block.
The scratch folder has ``plugins`` and ``examples`` linked from the repository and a ``registry``
made as ``make registry`` makes it (so a reader's "from the repository folder" holds), and
``sitegate`` first on PATH. ``examples/demo`` is a copy, so a doc that runs the demo in place keeps
its state (``examples/demo/.sitegate``) in the scratch folder, and the copy listens on free ports
(tests run beside a demo on 8765): its WebSocket API URL is in ``SITEGATE_URL``, which a client
in the docs reads, defaulting to the demo's ``ws://127.0.0.1:8765/api/websocket``. Site files written
from titled blocks (sites and their layers) get free ports (``api``/``observability`` ``port: 0``),
also where they set ports of their own, so tests run side by side; what hides is checked first: no
two sites a doc runs at the same time (every ``run=background`` site runs to the end of the doc)
may bind the same port as written (`port_clashes`), since a reader following the doc would get
"port in use".
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import attrs
import pytest

from sitegate.testing import write_site

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)
LINKED = ("plugins", "examples")
COPIED = ("examples/demo",)   # run in place by docs: their state folder must not be the repository's


@attrs.frozen
class Block:
    doc: str
    line: int
    lang: str
    options: dict[str, str]
    body: str

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def runnable(self) -> bool:
        return "run" in self.options or "title" in self.options

    @property
    def executed_elsewhere(self) -> bool:
        """```json ws blocks (run by tests/docs/test_websocket_api_examples.py) and tested= blocks."""
        return "ws" in self.options or "tested" in self.options


def blocks(doc: Path) -> list[Block]:
    text = doc.read_text()
    out = []
    for m in FENCE.finditer(text):
        info = m.group(1).strip()
        lang, _, rest = info.partition(" ")
        try:
            words = shlex.split(rest)
        except ValueError as exc:
            raise AssertionError(f"{doc.name}:{text.count(chr(10), 0, m.start()) + 1}: bad info string {info!r}: {exc}")
        options = dict(w.split("=", 1) if "=" in w else (w, "") for w in words)
        out.append(Block(doc.name, text.count("\n", 0, m.start()) + 1, lang, options, m.group(2)))
    return out


def runnable_docs() -> list[Path]:
    return sorted(d for d in DOCS.glob("*.md") if any("run" in b.options for b in blocks(d)))


def not_executed() -> dict[str, list[str]]:
    """Per doc, the blocks this test does not execute (the list of what is left to mark); ```text
    blocks are diagrams and sample output, not commands."""
    run = set(runnable_docs())
    return {d.name: [f"{b.where} ```{b.lang} {' '.join(f'{k}={v}' for k, v in b.options.items())}".rstrip()
                     for b in blocks(d) if b.lang != "text" and not b.executed_elsewhere
                     and (d not in run or not b.runnable)]
            for d in sorted(DOCS.glob("*.md"))}


class Background:
    def __init__(self, block: Block, cwd: Path, env: dict[str, str]):
        self.block = block
        self.lines: list[str] = []
        self.proc = subprocess.Popen(["bash", "-e", "-c", block.body], cwd=cwd, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self.reader.start()

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in list(self.lines)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"{self.block.where}: waited {timeout:g} s for {text!r}; "
                                     f"exit {self.proc.returncode}:\n{''.join(self.lines)[-5000:]}")
            time.sleep(0.05)

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.reader.join(5)
        return self.proc.returncode


def scratch(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        copied = [c for c in COPIED if c.startswith(f"{name}/")]
        if not copied:
            (tmp_path / name).symlink_to(REPO / name)
            continue
        (tmp_path / name).mkdir()
        for child in sorted((REPO / name).iterdir()):
            if f"{name}/{child.name}" in copied:
                shutil.copytree(child, tmp_path / name / child.name,
                                ignore=shutil.ignore_patterns(".sitegate", "__pycache__"))
            else:
                (tmp_path / name / child.name).symlink_to(child)
    env_extra = demo_on_free_ports(tmp_path / "examples" / "demo" / "site.yaml")
    # A registry of its own, signed like `make registry` does: never stale, and the repository's untouched.
    import io
    from sitegate.registry.devpublish import devpublish
    problems = devpublish(REPO / "plugins", tmp_path / "registry", out=io.StringIO())
    assert not problems, problems
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONUNBUFFERED="1", SITEGATE_REPO=str(REPO), **env_extra)
    return tmp_path, env


def demo_on_free_ports(site: Path) -> dict[str, str]:
    """The copied demo's fixed API port becomes a free one (and its metrics port 0); returns SITEGATE_URL."""
    import socket
    text = site.read_text()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert text.count("port: 8765") == 1, f"{site}: expected the demo's `api: port: 8765`"
    text = text.replace("port: 8765", f"port: {port}")
    if "\nobservability:" not in text:
        text += "\nobservability: {port: 0}\n"
    site.write_text(text)
    return {"SITEGATE_URL": f"ws://127.0.0.1:{port}/api/websocket"}


_SERVICE_BLOCK = re.compile(r"^(?:api|observability):[^\n]*(?:\n[ \t]+[^\n]*)*", re.M)


def write_titled(block: Block, folder: Path) -> None:
    dest = folder / block.options["title"]
    dest.parent.mkdir(parents=True, exist_ok=True)
    body = block.body
    if block.lang == "yaml":   # the ports a doc gives its sites (checked by port_clashes) become free ones
        body = _SERVICE_BLOCK.sub(lambda m: re.sub(r"\bport:[ \t]*\d+", "port: 0", m.group(0)), body)
    if block.lang == "yaml" and re.search(r"^site:", body, re.M):
        write_site(dest.parent, body, name=dest.name, fast=False)
    else:
        dest.write_text(body)


def _any_tag_loader():
    import yaml

    class Loader(yaml.SafeLoader):
        pass
    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)   # !include, !secret: not ports
    return Loader


def ports_as_written(site: str, files: dict[str, str]) -> dict[str, int]:
    """What `site` (a path in the doc's folder) binds as the reader wrote it: {"api": 8765, "metrics": 9108},
    its layers (``extends``) and the schema's defaults included; `files` holds the titled blocks so far."""
    import posixpath

    import yaml

    from sitegate.config.schema import ApiSettings, ObservabilitySettings

    def settings(path: str, depth: int = 0) -> dict[str, dict]:
        text = files.get(path)
        if text is None and (REPO / path).is_file():
            text = (REPO / path).read_text()    # e.g. examples/demo/site.yaml, as in the repository
        data = yaml.load(text or "", Loader=_any_tag_loader()) if depth < 10 else None
        data = data if isinstance(data, dict) else {}
        out: dict[str, dict] = {"api": {}, "observability": {}}
        bases = data.get("extends") or []
        for base in [bases] if isinstance(bases, str) else bases:
            for key, value in settings(posixpath.normpath(posixpath.join(posixpath.dirname(path), base)),
                                       depth + 1).items():
                out[key].update(value)
        for key in out:
            if isinstance(data.get(key), dict):
                out[key].update(data[key])
        return out

    found = settings(posixpath.normpath(site))
    api = {a.name: a.default for a in attrs.fields(ApiSettings)} | found["api"]
    obs = {a.name: a.default for a in attrs.fields(ObservabilitySettings)} | found["observability"]
    return {name: port for name, on, port in (("api", api["enabled"], api["port"]),
                                               ("metrics", obs["metrics"], obs["port"]))
            if on and isinstance(port, int) and port != 0}


def port_clashes(doc: Path) -> list[str]:
    """Sites of `doc` that run at the same time and bind the same port as written. Every
    ``run=background`` block runs to the end of the doc; a site it runs (``sitegate run FILE``) is
    checked against those started before it, with the titled files as they were written by then."""
    files: dict[str, str] = {}
    running: list[tuple[str, str, dict[str, int]]] = []    # (where, site, ports)
    problems = []
    for block in blocks(doc):
        if "title" in block.options and "run" not in block.options:
            files[os.path.normpath(block.options["title"])] = block.body
            continue
        if "run" not in block.options or block.lang != "sh":
            continue
        for m in re.finditer(r"\bsitegate\s+run\b([^\n#;&|]*)", block.body):
            try:
                words = shlex.split(m.group(1))
            except ValueError:
                continue
            for site in (w for w in words if w.endswith((".yaml", ".yml"))):
                ports = ports_as_written(site, files)
                for where, other, taken in running:
                    both = [f"{port} ({name} of {site}, {n} of {other})" for name, port in ports.items()
                            for n, p in taken.items() if p == port]
                    if both:
                        problems.append(
                            f"{doc.name}: {site} ({block.where}) runs while {other} ({where}) does, and as written "
                            f"both bind port {' and '.join(both)}: a reader gets 'port in use'; give one its own "
                            f"`api: {{port: ...}}` / `observability: {{port: ...}}` (0: any free port)")
                if block.options["run"] == "background":
                    running.append((block.where, site, ports))
    return problems


def test_no_two_sites_of_a_doc_bind_the_same_port_as_written():
    problems = [p for doc in runnable_docs() for p in port_clashes(doc)]
    assert not problems, "\n".join(problems)


def run_doc(doc: Path, folder: Path) -> None:
    clashes = port_clashes(doc)   # the free ports below would hide them
    assert not clashes, "\n".join(clashes)
    folder, env = scratch(folder)
    background: list[Background] = []
    try:
        for block in blocks(doc):
            if "title" in block.options and "run" not in block.options:
                write_titled(block, folder)
                continue
            if "run" not in block.options:
                continue
            mode = block.options["run"]
            timeout = float(block.options.get("timeout", 300))
            if mode == "background":
                bg = Background(block, folder, env)
                background.append(bg)
                bg.wait_for(block.options.get("until", ""), timeout)
                continue
            argv = [sys.executable, "-c", block.body] if block.lang == "python" else ["bash", "-e", "-c", block.body]
            done = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)
            output = done.stdout + done.stderr
            if mode == "fails":
                assert done.returncode != 0, f"{block.where}: expected a failure, got exit 0:\n{output}"
            else:
                assert done.returncode == 0, f"{block.where}: exit {done.returncode}:\n{block.body}\n{output}"
            if "expect" in block.options:
                assert block.options["expect"] in output, f"{block.where}: {block.options['expect']!r} not in:\n{output}"
    finally:
        statuses = [(bg, bg.stop()) for bg in background]
    for bg, status in statuses:
        assert status == 0, f"{bg.block.where}: exit {status} after SIGTERM:\n{''.join(bg.lines)[-5000:]}"


@pytest.mark.parametrize("doc", runnable_docs(), ids=lambda d: d.name)
def test_doc_runs_as_written(doc, tmp_path):
    run_doc(doc, tmp_path)


def test_every_block_of_the_docs_is_executed():
    """Issue 14: every command and code block in docs/*.md is executed by a test (```text is output)."""
    missing = [item for items in not_executed().values() for item in items]
    assert not missing, ("blocks no test executes (mark them, see the module docstring; "
                         "diagrams and sample output are ```text):\n" + "\n".join(missing))


def test_info_strings_follow_the_convention():
    known = {"run", "title", "until", "expect", "timeout", "ws", "tested"}
    modes = {"", "fails", "background"}
    problems = []
    for doc in sorted(DOCS.glob("*.md")):
        for b in blocks(doc):
            problems += [f"{b.where}: unknown option {k!r}" for k in b.options if k not in known]
            if "run" in b.options and b.options["run"] not in modes:
                problems.append(f"{b.where}: run={b.options['run']!r}, expected one of {sorted(modes)}")
            if b.options.get("run") == "background" and not b.options.get("until"):
                problems.append(f"{b.where}: run=background needs until=\"text it prints when ready\"")
            if "run" in b.options and b.lang not in ("sh", "python"):
                problems.append(f"{b.where}: only sh and python blocks can run, got {b.lang!r}")
            if "tested" in b.options:
                problems += problems_of_tested_block(b)
            if "ws" in b.options and (b.lang != "json" or doc.name != "websocket-api.md" or len(b.options) > 1):
                problems.append(f"{b.where}: `ws` marks the ```json ws exchanges of websocket-api.md only")
    assert not problems, "\n".join(problems)


def problems_of_tested_block(block: Block) -> list[str]:
    """A ```sh tested="FILE::NAME" block: the test exists and its source names every word of the block."""
    path, _, name = block.options["tested"].partition("::")
    source = (REPO / path).read_text() if path and (REPO / path).is_file() else ""
    found = re.search(rf"^(async )?def {re.escape(name)}\(.*?(?=^\S|\Z)", source, re.M | re.S) if name else None
    if found is None:
        return [f"{block.where}: tested={block.options['tested']!r}: no such test"]
    source = found.group(0)
    if "run" in block.options:
        return [f"{block.where}: a block is either run here or tested elsewhere"]
    words = [w for line in block.body.splitlines() for w in line.split("#")[0].split()]
    missing = [w for w in words if not re.search(rf"(?<![\w.-]){re.escape(w)}(?![\w.-])", source)]
    return [f"{block.where}: {path}::{name} does not run {' '.join(missing)}"] if missing else []


def test_a_tested_block_must_name_a_test_that_runs_its_words():
    demo = "tests/examples/test_demo.py::test_make_run_starts_the_demo_site"
    assert problems_of_tested_block(Block("d.md", 1, "sh", {"tested": demo}, "make run   # the demo\n")) == []
    assert problems_of_tested_block(Block("d.md", 1, "sh", {"tested": demo}, "make test\n")) == [
        f"d.md:1: {demo} does not run test"]
    assert "no such test" in problems_of_tested_block(Block("d.md", 1, "sh", {"tested": demo + "_not"}, "make run\n"))[0]


def test_the_convention_catches_a_failing_block(tmp_path):
    doc = tmp_path / "broken.md"
    doc.write_text("```sh run\nfalse\n```\n")
    with pytest.raises(AssertionError, match="broken.md:1: exit 1"):
        run_doc(doc, tmp_path / "scratch")


TWO_SITES = """\
```yaml title=one.yaml
site: one
entries: []
```

```sh run=background until="running"
sitegate run one.yaml
```

```yaml title=two/base.yaml
site: two
entries: []
```

```yaml title=two/desk.yaml
extends: [base.yaml]
{ports}
```

```sh run=background until="running"
sitegate run two/desk.yaml
```
"""


def test_two_sites_of_a_doc_on_the_same_ports_as_written_are_caught_before_anything_runs(tmp_path):
    doc = tmp_path / "clash.md"
    doc.write_text(TWO_SITES.format(ports="api: {port: 8766}"))      # the metrics port is still 9108
    with pytest.raises(AssertionError, match=re.escape(
            "clash.md: two/desk.yaml (clash.md:20) runs while one.yaml (clash.md:6) does, and as written both "
            "bind port 9108 (metrics of two/desk.yaml, metrics of one.yaml)")):
        run_doc(doc, tmp_path / "scratch")
    assert not (tmp_path / "scratch").exists()      # refused before anything ran
    doc.write_text(TWO_SITES.format(ports="api: {port: 8766}\nobservability:\n  port: 0   # any free port"))
    assert port_clashes(doc) == []
    doc.write_text(TWO_SITES.format(ports="api: {enabled: false}\nobservability: {metrics: false}"))
    assert port_clashes(doc) == []


def test_ports_a_doc_sets_become_free_ones_where_the_test_runs_it(tmp_path):
    for body in ("extends: [base.yaml]\napi: {port: 8766}\nobservability:\n  host: 127.0.0.1\n  port: 9109\n",
                 "site: s\nentries: []\napi: {port: 8766, host: 127.0.0.1}\nobservability: {port: 9109}\n"):
        write_titled(Block("d.md", 1, "yaml", {"title": "s.yaml"}, body), tmp_path)
        written = (tmp_path / "s.yaml").read_text()
        assert "8766" not in written and "9109" not in written and written.count("port: 0") == 2, written


if __name__ == "__main__":   # python tests/docs/test_docs_run.py: what no test executes yet
    for name, missing in not_executed().items():
        for item in missing:
            print(item)
