"""`sitegate rollout ...` against a running engine: start, status, pause, abort, and bad input."""

from __future__ import annotations

import trio

from sitegate.cli import main
from sitegate.updates.rollout import RolloutEngine
from sitegate.updates.store import RolloutStore


async def test_cli_start_pause_status_abort(lab, make_artifact, tmp_path, capsys):
    state = tmp_path / "state"
    path = make_artifact(size=1024).save(tmp_path / "artifacts")
    async with lab(30) as (handler, fleet), trio.open_nursery() as nursery:
        engine = RolloutEngine(RolloutStore(state), lambda entry: handler if entry == "nodes" else None, poll=0.05)
        await nursery.start(engine.run)
        assert main(["rollout", "start", "--state", str(state), "--artifact", str(path), "--entry", "nodes",
                     "--id", "r1", "--soak", "30", "--max-concurrent", "5"]) == 0
        assert "rollout r1: th-node-fw 1.1.0 via nodes" in capsys.readouterr().out
        with trio.fail_after(20):   # the engine picks it up and finishes the canary, then soaks
            while not (engine.status("r1")[0]["succeeded"] == 3 and engine.status("r1")[0]["soak_until"]):
                await trio.sleep(0.05)
        assert main(["rollout", "pause", "r1", "--state", str(state)]) == 0
        with trio.fail_after(5):
            while "r1" in engine._active:
                await trio.sleep(0.02)
        main(["rollout", "status", "r1", "--state", str(state), "--audit"])
        out = capsys.readouterr().out
        # 30 devices: the canary (one per hardware id) already is 10%, so the next wave is the 50% one.
        assert "r1  th-node-fw 1.1.0 (firmware) via nodes: PAUSED, wave 3/4" in out
        assert "wave_done  wave 1 done; next wave 3 after 30 s soak" in out
        assert "3/30 updated, 0 failed (0 rolled back), 0 in progress, 27 pending" in out
        assert " pause " in out and " plan " in out
        main(["rollout", "status", "nope", "--state", str(state)])
        assert "error: no rollout 'nope'" in capsys.readouterr().out
        assert main(["rollout", "abort", "r1", "--state", str(state)]) == 0
        assert main(["rollout", "resume", "r1", "--state", str(state)]) == 1
        assert "error: rollout r1 is aborted; it cannot be resumed" in capsys.readouterr().out
        assert sum(n.touched for n in fleet.nodes.values()) == 3
        nursery.cancel_scope.cancel()


def test_cli_bad_input_says_what_and_where(tmp_path, make_artifact, capsys):
    path = make_artifact().save(tmp_path)
    state = str(tmp_path / "s")
    assert main(["rollout", "start", "--state", state, "--artifact", str(path), "--entry", "e", "--waves", "1,x"]) == 1
    assert "--waves: expected comma-separated percentages" in capsys.readouterr().out
    assert main(["rollout", "start", "--state", state, "--artifact", str(path), "--entry", "e", "--waves", "50,10"]) == 1
    assert "waves: expected increasing percentages ending at 100, got [50.0, 10.0]" in capsys.readouterr().out
    assert main(["rollout", "start", "--state", state, "--artifact", str(tmp_path / "nope.update.json"),
                 "--entry", "e"]) == 1
    assert "nope.update.json: not found" in capsys.readouterr().out
    assert main(["rollout", "pause", "zz", "--state", state]) == 1
    assert "no rollout 'zz'" in capsys.readouterr().out
