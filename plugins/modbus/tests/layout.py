"""The register layout of the test device: raw registers written out by hand, and the points that read them.

`modbus_server.py` serves HOLDING/INPUT/COILS/DISCRETE; the tests read them
through POINTS and compare with EXPECTED. The registers were computed by hand
from the IEEE 754 and two's complement bit patterns (0x12345678, 1.0f =
0x3F800000, -2.5f = 0xC0200000, 1.0 = 0x3FF0000000000000, -0.5 = 0xBFE0...).
"""

# address: registers
HOLDING: dict[int, list[int]] = {
    0: [0x1234],                         # uint16 4660
    1: [0xFFFE],                         # int16 -2
    2: [0x1234, 0x5678],                 # int32 ABCD 0x12345678
    4: [0x5678, 0x1234],                 # int32 CDAB
    6: [0x3412, 0x7856],                 # int32 BADC
    8: [0x7856, 0x3412],                 # int32 DCBA
    10: [0xEE6B, 0x2800],                # uint32 ABCD 4,000,000,000
    12: [0x2800, 0xEE6B],                # uint32 CDAB
    14: [0x3F80, 0x0000],                # float32 ABCD 1.0
    16: [0x0000, 0xC020],                # float32 CDAB -2.5
    18: [0x803F, 0x0000],                # float32 BADC 1.0
    20: [0x0000, 0x803F],                # float32 DCBA 1.0
    22: [0x0102, 0x0304, 0x0506, 0x0708],  # int64 ABCD 0x0102030405060708
    26: [0x0708, 0x0506, 0x0304, 0x0102],  # int64 CDAB
    30: [0x0201, 0x0403, 0x0605, 0x0807],  # int64 BADC
    34: [0x0807, 0x0605, 0x0403, 0x0201],  # int64 DCBA
    38: [0x8000, 0x0000, 0x0000, 0x0001],  # uint64 ABCD 2**63 + 1
    42: [0x3FF0, 0x0000, 0x0000, 0x0000],  # float64 ABCD 1.0
    46: [0x0000, 0x0000, 0x0000, 0xBFE0],  # float64 CDAB -0.5
    50: [0xF03F, 0x0000, 0x0000, 0x0000],  # float64 BADC 1.0
    54: [0x0000, 0x0000, 0x0000, 0xE0BF],  # float64 DCBA -0.5
    58: [0x4142, 0x3132, 0x0000],        # string ABCD "AB12"
    61: [0x4241, 0x3231, 0x0000],        # string BADC "AB12"
    64: [0x0009],                        # bits 0 and 3 set
    65: [650],                           # int16 x 0.1 - 40 = 25.0
    66: [0] * 34,                        # 66..99 writable scratch area
    # 100..109: not defined, the device refuses them (illegal data address)
    110: [7, 8],
}
INPUT: dict[int, list[int]] = {
    0: [42],
    1: [0xE979, 0x42F6],                 # float32 CDAB 123.456
}
COILS = [True, False, True, True, False, False, False, False] + [False] * 24   # 0..7 fixed, 8..31 scratch
DISCRETE = [False, True, False, False, False, False, False, True]

# name: (point config, expected value)
POINTS: dict[str, tuple[dict, object]] = {
    "u16": ({"address": 0, "type": "uint16"}, 0x1234),
    "i16": ({"address": 1, "type": "int16"}, -2),
    "i32_abcd": ({"address": 2, "type": "int32", "order": "ABCD"}, 0x12345678),
    "i32_cdab": ({"address": 4, "type": "int32", "order": "CDAB"}, 0x12345678),
    "i32_badc": ({"address": 6, "type": "int32", "order": "BADC"}, 0x12345678),
    "i32_dcba": ({"address": 8, "type": "int32", "order": "DCBA"}, 0x12345678),
    "u32_abcd": ({"address": 10, "type": "uint32", "order": "ABCD"}, 4_000_000_000),
    "u32_cdab": ({"address": 12, "type": "uint32", "order": "CDAB"}, 4_000_000_000),
    "f32_abcd": ({"address": 14, "type": "float32", "order": "ABCD"}, 1.0),
    "f32_cdab": ({"address": 16, "type": "float32", "order": "CDAB"}, -2.5),
    "f32_badc": ({"address": 18, "type": "float32", "order": "BADC"}, 1.0),
    "f32_dcba": ({"address": 20, "type": "float32", "order": "DCBA"}, 1.0),
    "i64_abcd": ({"address": 22, "type": "int64", "order": "ABCD"}, 0x0102030405060708),
    "i64_cdab": ({"address": 26, "type": "int64", "order": "CDAB"}, 0x0102030405060708),
    "i64_badc": ({"address": 30, "type": "int64", "order": "BADC"}, 0x0102030405060708),
    "i64_dcba": ({"address": 34, "type": "int64", "order": "DCBA"}, 0x0102030405060708),
    "u64_abcd": ({"address": 38, "type": "uint64", "order": "ABCD"}, 2**63 + 1),
    "f64_abcd": ({"address": 42, "type": "float64", "order": "ABCD"}, 1.0),
    "f64_cdab": ({"address": 46, "type": "float64", "order": "CDAB"}, -0.5),
    "f64_badc": ({"address": 50, "type": "float64", "order": "BADC"}, 1.0),
    "f64_dcba": ({"address": 54, "type": "float64", "order": "DCBA"}, -0.5),
    "str_abcd": ({"address": 58, "type": "string", "length": 3, "order": "ABCD"}, "AB12"),
    "str_badc": ({"address": 61, "type": "string", "length": 3, "order": "BADC"}, "AB12"),
    "bit0": ({"address": 64, "type": "bool", "bit": 0}, True),
    "bit1": ({"address": 64, "type": "bool", "bit": 1}, False),
    "bit3": ({"address": 64, "type": "bool", "bit": 3}, True),
    "temp": ({"address": 65, "type": "int16", "scale": 0.1, "offset": -40}, 25.0),
    "after_gap": ({"address": 110, "type": "uint16"}, 7),
    "in_u16": ({"table": "input", "address": 0, "type": "uint16"}, 42),
    "in_f32": ({"table": "input", "address": 1, "type": "float32", "order": "CDAB"}, 123.456),
    "coil0": ({"table": "coil", "address": 0, "type": "bool"}, True),
    "coil1": ({"table": "coil", "address": 1, "type": "bool"}, False),
    "coil3": ({"table": "coil", "address": 3, "type": "bool"}, True),
    "di1": ({"table": "discrete", "address": 1, "type": "bool"}, True),
    "di7": ({"table": "discrete", "address": 7, "type": "bool"}, True),
}
GAPS = [{"table": "holding", "start": 100, "end": 109}]
