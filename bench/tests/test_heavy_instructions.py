"""The callgrind reader of heavy_instructions.py, on a file written the way callgrind writes
one with --dump-instr=yes (positions `instr line`, compressed names and relative addresses)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import heavy_instructions  # noqa: E402

CALLGRIND = """# callgrind format
version: 1
positions: instr line
events: Ir

ob=(1) /bin/envoy
fl=(1) ???
fn=(1) 0x0000000000001000
0x1000 0 10
+3 0 10
cob=(2) /lib/libc.so.6
cfn=(2) memcpy
calls=10 0x500 0
+2 0 999
cfn=(3)
calls=1 0x600 0
+2 0 55
+3 0 10
* 0 4
-6 0 7
ob=(2)
fn=(2)
0x500 0 40
ob=(3) ???
fn=(4) 0x0000000000300000
0x300000 0 2
"""


def test_costs_by_object_and_address(tmp_path):
    path = tmp_path / "callgrind.a.out"
    path.write_text(CALLGRIND)
    counts = heavy_instructions.executions(str(path))
    # The lines after `calls=` are the calls' inclusive costs, not executions, and the next
    # line continues from the position before them: +3 from 0x1003 is the call's successor.
    assert counts["/bin/envoy"] == {0x1000: 17, 0x1003: 10, 0x1006: 14}
    # A name defined in `cob=` is the object a later `ob=(2)` refers to.
    assert counts["/lib/libc.so.6"] == {0x500: 40}
    assert counts["???"] == {0x300000: 2}
