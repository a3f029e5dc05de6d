"""Running one WASM module instance under budgets: fuel, memory pages and wall time.

`Sandbox` instantiates a verified module with no imports (WASI only when granted),
hands it its config, and runs `process` on frames laid out as abi.py says. Every way a
call can go wrong comes out as `ModuleFailure(reason, detail)`; the processor decides
what a failure means for the route. One wasmtime Engine per process, shared.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import math
import threading
import time
from typing import Any, Mapping

import attrs
import wasmtime

from . import abi

PAGE = 65536
SIGNATURES = {"alloc": ["i32"], "process": ["i32", "i32"], "init": ["i32", "i32"]}   # all return i32
EPOCH_TICK = 0.001          # seconds per epoch tick while a call runs


class ModuleFailure(Exception):
    """A module was stopped or returned garbage. `reason` is one of REASONS."""

    REASONS = ("fuel", "memory", "wall-time", "trap", "garbage", "init", "link")

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@attrs.frozen(slots=True)
class Budgets:
    fuel: int = 10_000_000         # wasm instructions (roughly) per batch
    max_pages: int = 256           # 64 KiB pages of linear memory (16 MiB)
    wall: float = 0.05             # seconds per batch


class EpochClock:
    """Advances the engine's epoch every EPOCH_TICK while modules are being called.

    A thread, not a trio task: `process` is synchronous on the trio thread, and the
    deadline must fire while that thread is inside wasm (wasmtime releases the GIL there).
    `arm` is on the hot path, so it only sets a flag; after a second without calls the
    thread sleeps on an Event until the next one, so an idle site pays nothing.
    """

    IDLE_AFTER = 1.0

    def __init__(self, engine: wasmtime.Engine):
        self.engine = engine
        self._used = False
        self._calls = 0         # calls in progress (processors run on the trio thread)
        self._idle = True
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def arm(self) -> None:
        self._used = True
        self._calls += 1
        if self._idle:
            with self._lock:
                if self._idle:
                    self._idle = False
                    self._wake.set()
                    if self._thread is None:
                        self._thread = threading.Thread(target=self._tick, name="wasm-epoch", daemon=True)
                        self._thread.start()

    def disarm(self) -> None:
        self._calls -= 1    # the clock keeps ticking a while: deadlines are relative to each call's start

    def _tick(self) -> None:
        last = time.monotonic()
        quiet = 0.0
        while True:
            if self._idle:
                self._wake.wait()
                self._wake.clear()
                last, quiet = time.monotonic(), 0.0
            time.sleep(EPOCH_TICK)
            now = time.monotonic()
            # A late wake-up (busy machine, GIL) still advances the epoch by the time that passed.
            for _ in range(max(1, int((now - last) / EPOCH_TICK))):
                self.engine.increment_epoch()
            quiet = 0.0 if self._used or self._calls > 0 else quiet + (now - last)
            self._used = False
            last = now
            if quiet > self.IDLE_AFTER:
                with self._lock:
                    self._idle = True
                if self._used:          # a call armed between the check and going idle: keep ticking
                    with self._lock:
                        self._idle = False


_engine: wasmtime.Engine | None = None
_clock: EpochClock | None = None
_compiled: dict[str, wasmtime.Module] = {}
_engine_lock = threading.Lock()


def engine() -> tuple[wasmtime.Engine, EpochClock]:
    global _engine, _clock
    with _engine_lock:
        if _engine is None:
            cfg = wasmtime.Config()
            cfg.consume_fuel = True
            cfg.epoch_interruption = True
            _engine = wasmtime.Engine(cfg)
            _clock = EpochClock(_engine)
        return _engine, _clock


def compile_module(data: bytes, where: str) -> wasmtime.Module:
    """Compile (once per distinct bytes) a .wasm binary or, for dev modules, .wat text."""
    key = hashlib.sha256(data).hexdigest()
    found = _compiled.get(key)
    if found is None:
        eng, _ = engine()
        try:
            found = wasmtime.Module(eng, data if data.startswith(b"\0asm") else data.decode("utf-8"))
        except (wasmtime.WasmtimeError, UnicodeDecodeError) as exc:
            raise ModuleFailure("link", f"{where}: not a valid WebAssembly module ({str(exc).splitlines()[0]})") \
                from None
        _compiled[key] = found
    return found


class _FastCall:
    """Calls an exported (i32...) -> i32 function without wasmtime-py's per-call type checks.

    wasmtime-py's Func.__call__ costs ~80 µs (type objects built per call); this binds the
    ctypes argument buffers once. Falls back to the public call if the private FFI moved.
    """

    def __init__(self, store: wasmtime.Store, func: wasmtime.Func, nparams: int):
        self.store, self.func, self.nparams = store, func, nparams
        try:
            from wasmtime import _ffi as ffi
            self._ffi = ffi
            self.ctx = store._context()
            self.params = (ffi.wasmtime_val_t * nparams)()
            for p in self.params:
                p.kind = ffi.WASMTIME_I32.value
            self.results = (ffi.wasmtime_val_t * 1)()
            self.trap = ctypes.POINTER(ffi.wasm_trap_t)()
            self.fref = ctypes.byref(func._func)
            self.tref = ctypes.byref(self.trap)
            self.raw = ffi.wasmtime_func_call
        except (ImportError, AttributeError):
            self.raw = None

    def __call__(self, *args: int) -> int:
        if self.raw is None:
            return self.func(self.store, *args)
        params = self.params
        for i, a in enumerate(args):
            params[i].of.i32 = a
        err = self.raw(self.ctx, self.fref, params, self.nparams, self.results, 1, self.tref)
        if self.trap:
            trap = wasmtime.Trap._from_ptr(self.trap)
            self.trap = ctypes.POINTER(self._ffi.wasm_trap_t)()
            self.tref = ctypes.byref(self.trap)
            raise trap
        if err:
            raise wasmtime.WasmtimeError._from_ptr(err)
        return self.results[0].of.i32


class Sandbox:
    """One instance of a module with its own store, memory and budgets."""

    def __init__(self, data: bytes, where: str, *, budgets: Budgets = Budgets(), config: Mapping[str, Any] | None = None,
                 max_points: int = 1024, wasi: bool = False):
        self.where = where
        self.budgets = budgets
        self.max_points = max_points
        eng, self.clock = engine()
        module = compile_module(data, where)
        self.store = store = wasmtime.Store(eng)
        store.set_limits(memory_size=budgets.max_pages * PAGE, table_elements=100_000, instances=1, tables=4,
                         memories=1)
        self._arm_budgets(budgets.fuel * 10)     # instantiation and init get a generous, still finite, budget
        try:
            if wasi:
                linker = wasmtime.Linker(eng)
                linker.define_wasi()
                store.set_wasi(wasmtime.WasiConfig())   # no preopened folders, no env, no args
                instance = linker.instantiate(store, module)
            else:
                imports = [f"{i.module}.{i.name}" for i in module.imports]
                if imports:
                    raise ModuleFailure("link", f"{where}: imports {', '.join(imports)}; a sitegate module gets no "
                                        "imports (WASI only when the step says `wasi: true`)")
                instance = wasmtime.Instance(store, module, [])
        except wasmtime.WasmtimeError as exc:
            raise ModuleFailure("link", f"{where}: {str(exc).splitlines()[0]}") from None
        except wasmtime.Trap as exc:
            raise self._failure(exc, "instantiating") from None
        finally:
            self.clock.disarm()
        exports = instance.exports(store)
        self.exports = {name: exports[name] for name in exports}
        missing = [n for n in ("memory", "alloc", "process") if n not in self.exports]
        if missing:
            raise ModuleFailure("link", f"{where}: does not export {', '.join(missing)} (see docs/wasm-processors.md)")
        self.memory = self.exports["memory"]
        if not isinstance(self.memory, wasmtime.Memory):
            raise ModuleFailure("link", f"{where}: export 'memory' is not a memory")
        for name, params in SIGNATURES.items():
            func = self.exports.get(name)
            if func is None:
                continue
            ty = func.type(store) if isinstance(func, wasmtime.Func) else None
            if ty is None or [str(p) for p in ty.params] != params or [str(r) for r in ty.results] != ["i32"]:
                raise ModuleFailure("link", f"{where}: export {name!r} must be a function "
                                    f"({', '.join(params)}) -> i32 (see docs/wasm-processors.md)")
        try:    # wasmtime-py's data_ptr costs several µs a call; the raw call is what it wraps
            from wasmtime import _ffi as ffi
            self._ctx, self._mref = store._context(), ctypes.byref(self.memory._memory)
            self._memory_data = ffi.wasmtime_memory_data
        except (ImportError, AttributeError):
            self._memory_data = None
        self._alloc = _FastCall(store, self.exports["alloc"], 1)
        self._process = _FastCall(store, self.exports["process"], 2)
        self.capacity = 0
        self.frame = 0
        self.fuel_used = 0
        try:
            self._configure(dict(config or {}))
        except wasmtime.WasmtimeError as exc:     # e.g. an immutable `max_points` global
            raise ModuleFailure("init", f"{where}: {str(exc).splitlines()[0]}") from None

    # -- set-up ----------------------------------------------------------------------------
    def _configure(self, config: dict[str, Any]) -> None:
        store, ex = self.store, self.exports
        if "max_points" in ex and isinstance(ex["max_points"], wasmtime.Global):
            ex["max_points"].set_value(store, wasmtime.Val.i32(self.max_points))
        declared = sorted(n[len("config."):] for n in ex if n.startswith("config."))
        for key, value in config.items():
            glob = ex.get(f"config.{key}")
            if glob is None:
                continue
            if not isinstance(glob, wasmtime.Global) or not glob.type(store).mutable:
                raise ModuleFailure("init", f"{self.where}: export config.{key} must be a mutable global")
            kind = str(glob.type(store).content)
            try:
                if kind == "i32" or kind == "i64":
                    if isinstance(value, bool) or float(value) != int(value):
                        raise ValueError
                    val = wasmtime.Val.i32(int(value)) if kind == "i32" else wasmtime.Val.i64(int(value))
                elif kind in ("f64", "f32"):
                    if isinstance(value, bool):
                        raise ValueError
                    val = wasmtime.Val.f64(float(value)) if kind == "f64" else wasmtime.Val.f32(float(value))
                else:
                    raise ModuleFailure("init", f"{self.where}: config.{key} is a {kind} global; use i32, i64, "
                                        "f32 or f64")
                glob.set_value(store, val)
            except (TypeError, ValueError, OverflowError):
                raise ModuleFailure("init", f"config.{key}: expected {'an integer' if kind[0] == 'i' else 'a number'}"
                                    f" for {self.where}, got {value!r}") from None
        # A module that declares config globals declares all its settings; one that declares none
        # reads the JSON copy in init (and must have init to get any config at all).
        unknown = [k for k in config if f"config.{k}" not in ex]
        if unknown and (declared or "init" not in ex):
            raise ModuleFailure("init", f"config: {self.where} has no setting {', '.join(map(repr, unknown))} "
                                f"(it declares: {', '.join(declared) or 'none'})")
        if "init" in ex:
            blob = json.dumps({"abi": abi.ABI_VERSION, "max_points": self.max_points, "config": config},
                              sort_keys=True, separators=(",", ":")).encode()
            self._arm_budgets(self.budgets.fuel * 10)
            try:
                ptr = self._alloc(len(blob))
                if ptr <= 0:
                    raise ModuleFailure("memory", f"{self.where}: alloc({len(blob)}) for the config failed")
                self.memory.write(store, blob, ptr)
                code = _FastCall(store, ex["init"], 2)(ptr, len(blob))
            except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
                raise self._failure(exc, "init") from None
            finally:
                self.clock.disarm()
            if code != 0:
                raise ModuleFailure("init", f"{self.where}: init refused the config {config!r} (code {code})")

    def _arm_budgets(self, fuel: int) -> None:
        self.store.set_fuel(fuel)
        self.store.set_epoch_deadline(math.ceil(self.budgets.wall / EPOCH_TICK) + 1)
        self.clock.arm()

    def _failure(self, exc: BaseException, doing: str) -> ModuleFailure:
        code = exc.trap_code if isinstance(exc, wasmtime.Trap) else None
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        message = lines[-1] if lines else type(exc).__name__     # wasmtime puts the cause last
        message = message.split(": ", 1)[1] if message.split(": ", 1)[0].isdigit() else message
        if code == wasmtime.TrapCode.OUT_OF_FUEL:
            return ModuleFailure("fuel", f"{doing}: ran out of fuel (budget {self.budgets.fuel} per batch)")
        if code == wasmtime.TrapCode.INTERRUPT:
            return ModuleFailure("wall-time", f"{doing}: took longer than {self.budgets.wall * 1000:g} ms")
        pages = self.memory_pages()
        if pages >= self.budgets.max_pages and code in (wasmtime.TrapCode.MEMORY_OUT_OF_BOUNDS, None):
            return ModuleFailure("memory", f"{doing}: reached the limit of {self.budgets.max_pages} pages "
                                 f"({self.budgets.max_pages * PAGE // 1024} KiB) and then trapped: {message}")
        return ModuleFailure("trap", f"{doing}: {message}")

    def memory_pages(self) -> int:
        mem = getattr(self, "memory", None)
        return mem.size(self.store) if isinstance(mem, wasmtime.Memory) else 0

    # -- per batch -------------------------------------------------------------------------
    def _ensure_frame(self, n: int) -> None:
        if n <= self.capacity:
            return
        capacity = max(n, 2 * self.capacity, 64)
        self._arm_budgets(self.budgets.fuel)
        try:
            ptr = self._alloc(abi.frame_bytes(capacity))
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            raise self._failure(exc, f"alloc for {capacity} readings") from None
        finally:
            self.clock.disarm()
        if ptr <= 0 or ptr % 8 or ptr + abi.frame_bytes(capacity) > self.memory.data_len(self.store):
            if self.memory_pages() >= self.budgets.max_pages:
                raise ModuleFailure("memory", f"alloc for {capacity} readings failed at the limit of "
                                    f"{self.budgets.max_pages} pages")
            raise ModuleFailure("garbage", f"alloc({abi.frame_bytes(capacity)}) returned {ptr}, not an 8-aligned "
                                "address inside memory")
        self.frame, self.capacity = ptr, capacity

    def _base(self) -> int:
        """Address of linear memory now (it moves when memory grows)."""
        if self._memory_data is not None:
            return ctypes.cast(self._memory_data(self._ctx, self._mref), ctypes.c_void_p).value
        return ctypes.addressof(self.memory.data_ptr(self.store).contents)

    def run(self, n: int, inputs: bytes) -> tuple[int, int, int]:
        """Write the input columns (24n bytes), call process; returns (out_n, events_n, frame address)."""
        self._ensure_frame(n)
        frame = self.frame
        base = self._base()
        ctypes.memset(base + frame, 0, abi.HEADER)
        ctypes.memmove(base + frame + abi.HEADER, inputs, len(inputs))
        fuel = self.budgets.fuel
        self._arm_budgets(fuel)
        try:
            out_n = self._process(frame, n)
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            raise self._failure(exc, "process") from None
        finally:
            self.clock.disarm()
        self.fuel_used = fuel - self.store.get_fuel()
        if not 0 <= out_n <= n:
            raise ModuleFailure("garbage", f"process returned {out_n} readings for a batch of {n}"
                                + (" (the module's own error code)" if out_n < 0 else ""))
        base = self._base()
        events_n = ctypes.c_int32.from_address(base + frame).value
        if not 0 <= events_n <= n:
            raise ModuleFailure("garbage", f"events_n is {events_n} for a batch of {n} (0..{n} allowed)")
        return out_n, events_n, base + frame

    def read(self, address: int, size: int) -> bytes:
        return ctypes.string_at(address, size)
