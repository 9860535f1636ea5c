"""Let threads meet in the middle of a read-modify-write, so that a missing lock shows.

On CPython 3.10 and later the interpreter hands the GIL to another thread only at a few
points: a call into Python code, a backward jump, a few calls into C. ``self._value += 1``
on a float or an int has none of them, so a counter without its lock still counts exactly,
however short ``sys.setswitchinterval`` is and however many threads write. Tracing the
modules under test opcode by opcode turns every bytecode of theirs into such a point (the
trace function is Python code, and entering it may switch threads), and a switch interval
of a microsecond makes the interpreter take one at nearly every chance.

This module imports nothing from the test package, so that a subprocess can use it too.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType, ModuleType
from typing import Any

TraceFunction = Callable[[FrameType, str, Any], Any]


@contextlib.contextmanager
def switching_inside(*modules: ModuleType) -> Iterator[None]:
    """Within this block, threads started here may switch between any two bytecodes of the
    functions defined in ``modules`` (and between any other two at the usual points).

    Only threads started inside the block are traced (``threading.settrace``), and only
    frames of these modules opcode by opcode, so a test of a few thousand writes per thread
    still runs in well under a second."""
    files = {module.__file__ for module in modules}
    if None in files:
        raise ValueError(f"modules without a source file: {modules}")

    def each_opcode(frame: FrameType, event: str, arg: Any) -> TraceFunction:
        return each_opcode

    def on_call(frame: FrameType, event: str, arg: Any) -> TraceFunction | None:
        if frame.f_code.co_filename not in files:
            return None
        frame.f_trace_lines = False
        frame.f_trace_opcodes = True
        return each_opcode

    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    threading.settrace(on_call)
    try:
        yield
    finally:
        threading.settrace(None)  # type: ignore[arg-type]
        sys.setswitchinterval(before)


def run_together(work: Callable[[], object], threads: int) -> None:
    """Run ``work()`` in ``threads`` threads that all start at once, and wait for them;
    an exception in any of them fails the caller."""
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def body() -> None:
        try:
            start.wait()
            work()
        except BaseException as e:  # reported to the caller, not lost in the thread
            errors.append(e)

    pool = [threading.Thread(target=body) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]
