"""An asyncua server with a known address space, run in its own process by the tests and benchmarks.

Usage: python server.py PORT [--items N] [--period S] [--secure CERT KEY] [--user NAME:PASSWORD]
Prints "READY <endpoint>" once serving; exits when stdin closes (its parent went away).

Address space (namespace urn:sitegate:test):
  Objects/Plant/Line1/Temperature  Double, 20.0 + step/10, changes every --period
  Objects/Plant/Line1/Counter      Int64, +1 every --period
  Objects/Plant/Line1/Setpoint     Double, writable by clients, starts at 42.0
  Objects/Plant/Line1/Running      Boolean, writable
  Objects/Plant/Line1/Reset(Int64) -> Boolean: sets Counter to the argument
  Objects/Plant/Bulk/Item0..N-1    Double, all change every --period (for benchmarks)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading

from asyncua import Server, ua
from asyncua.common.methods import uamethod


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--items", type=int, default=0)
    ap.add_argument("--period", type=float, default=0.1)
    ap.add_argument("--secure", nargs=2, metavar=("CERT", "KEY"))
    ap.add_argument("--user")
    args = ap.parse_args()

    server = Server()
    await server.init()
    endpoint = f"opc.tcp://127.0.0.1:{args.port}/sitegate/test"
    server.set_endpoint(endpoint)
    server.set_server_name("sitegate test server")
    if args.secure:
        await server.load_certificate(args.secure[0])
        await server.load_private_key(args.secure[1])
        server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
                                    ua.SecurityPolicyType.Basic256Sha256_Sign])
    if args.user:
        name, password = args.user.split(":", 1)

        class Users:
            def get_user(self, iserver, username=None, password_=None, certificate=None, **kw):
                from asyncua.server.user_managers import User, UserRole
                pw = kw.get("password", password_)
                if username is None and certificate is None:
                    return None
                if username == name and pw == password:
                    return User(role=UserRole.User)
                return None

        server.iserver.set_user_manager(Users())
        server.set_identity_tokens([ua.UserNameIdentityToken])
    ns = await server.register_namespace("urn:sitegate:test")
    objects = server.nodes.objects
    plant = await objects.add_object(ua.NodeId("Plant", ns), ua.QualifiedName("Plant", ns))
    line = await plant.add_object(ua.NodeId("Line1", ns), ua.QualifiedName("Line1", ns))
    temp = await line.add_variable(ua.NodeId("Line1.Temperature", ns), ua.QualifiedName("Temperature", ns), 20.0)
    counter = await line.add_variable(ua.NodeId("Line1.Counter", ns), ua.QualifiedName("Counter", ns),
                                      ua.Variant(0, ua.VariantType.Int64))
    setpoint = await line.add_variable(ua.NodeId("Line1.Setpoint", ns), ua.QualifiedName("Setpoint", ns), 42.0)
    running = await line.add_variable(ua.NodeId("Line1.Running", ns), ua.QualifiedName("Running", ns), True)
    await setpoint.set_writable()
    await running.set_writable()

    count = {"value": 0}   # the ticker counts on from whatever Reset set

    @uamethod
    async def reset(parent, value):
        count["value"] = int(value)
        await counter.write_value(ua.Variant(count["value"], ua.VariantType.Int64))
        return True

    await line.add_method(ua.NodeId("Line1.Reset", ns), ua.QualifiedName("Reset", ns), reset,
                          [ua.VariantType.Int64], [ua.VariantType.Boolean])
    bulk_nodes = []
    if args.items:
        bulk = await plant.add_object(ua.NodeId("Bulk", ns), ua.QualifiedName("Bulk", ns))
        for i in range(args.items):
            bulk_nodes.append(await bulk.add_variable(ua.NodeId(f"Bulk.Item{i}", ns),
                                                      ua.QualifiedName(f"Item{i}", ns), 0.0))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def watch_stdin():
        sys.stdin.read()            # returns when the parent closes our stdin or dies
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    async with server:
        print(f"READY {endpoint} ns={ns}", flush=True)
        step = 0
        while not stop.is_set():
            step += 1
            await temp.write_value(20.0 + step / 10)
            count["value"] += 1
            await counter.write_value(ua.Variant(count["value"], ua.VariantType.Int64))
            for node in bulk_nodes:
                await node.write_value(float(step))
            try:
                await asyncio.wait_for(stop.wait(), args.period)
            except asyncio.TimeoutError:
                pass


if __name__ == "__main__":
    asyncio.run(main())
