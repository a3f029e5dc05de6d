import trio

async def test_smoke(lab, make_artifact):
    async with lab(5) as (handler, fleet):
        art = make_artifact()
        await handler.stage("n0001", art)
        await handler.activate("n0001")
        assert await handler.health_check("n0001", __import__("time").time() + 2)
        await handler.commit("n0001")
        assert fleet.nodes["n0001"].slots["firmware"].active["version"] == "1.1.0"
