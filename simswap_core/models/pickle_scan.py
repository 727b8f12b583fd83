"""Resource limits of a pickle, checked by reading its opcodes before anything is unpickled.

A pickle is a small program: a 1 KB file can describe a structure that is exponentially large once shared
references (the memo) are expanded, nest containers deeper than any recursion can follow, or declare strings of
terabytes. :func:`scan_pickle` walks the opcodes (``pickletools.genops``, which never builds an object) with a
symbolic stack that only tracks which node holds which, and refuses the pickle when any of the
:class:`PickleLimits` is exceeded: its byte size, opcode count, memo size, MARK depth, nesting depth of the built
structure, or its *expanded* size (every shared reference counted as a copy, as ``repr``, deep copies and
recursive walks would see it). A pickle that passes can be unpickled and walked in bounded time and memory.
"""
from __future__ import annotations

import io
import pickletools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import CheckpointError

__all__ = ["PickleLimits", "PickleStats", "scan_pickle"]


@dataclass(frozen=True)
class PickleLimits:
    """Upper bounds of one pickle; the defaults leave a wide margin above every SimSwap checkpoint (the official
    pickled ArcFace: 0.25 MB, 78k opcodes, 17k memo entries, nesting depth 29, 70k objects expanded)."""

    max_bytes: int = 16 * 1024 * 1024
    max_opcodes: int = 400_000
    max_memo: int = 250_000
    max_marks: int = 100
    max_stack: int = 10_000
    max_depth: int = 100
    max_expanded: int = 2_000_000
    max_string: int = 4 * 1024 * 1024


@dataclass(frozen=True)
class PickleStats:
    """What :func:`scan_pickle` measured: size in bytes (up to and including STOP), opcodes, memo entries, the
    nesting depth and expanded node count of the result."""

    nbytes: int
    opcodes: int
    memo: int
    depth: int
    expanded: int


_MARK = -1  # a MARK on the symbolic stack (node ids are >= 0)
# opcodes that add their popped items to a container that stays on the stack (the container is mutated, so every
# earlier reference to it sees the new children)
_MUTATORS_ONE = {"APPEND": 1, "SETITEM": 2, "BUILD": 1}
_MUTATORS_MARK = {"APPENDS", "SETITEMS", "ADDITEMS"}


def _fail(source: str, what: str, limit: int | str) -> CheckpointError:
    return CheckpointError(f"{source}: found a pickle whose {what} (limit {limit}); expected an ordinary checkpoint "
                           f"pickle, refused before unpickling (a damaged or hostile file)")


def scan_pickle(data: bytes | memoryview, source: str, limits: PickleLimits | None = None,
                offset: int = 0, visit: Callable[[str, Any], None] | None = None) -> PickleStats:
    """Check the pickle starting at ``data[offset:]`` against ``limits`` without unpickling it.

    Raises :class:`CheckpointError` naming ``source`` and the limit exceeded, or the truncation/garbage found.
    Returns the measured :class:`PickleStats` (``nbytes`` tells where the pickle ends, for files that hold
    several pickles in a row). ``visit``, if given, sees every opcode's name and argument (within the limits)
    before it is scanned, for a caller that tracks values without unpickling (the installer's legacy storages).
    """
    lim = limits or PickleLimits()
    stream = io.BytesIO(data)
    stream.seek(offset)
    children: list[list[int]] = []   # node id -> ids of the nodes it holds
    stack: list[int] = []
    memo: dict[int, int] = {}
    marks = 0
    opcodes = 0

    def new_node(kids: list[int]) -> int:
        children.append(kids)
        return len(children) - 1

    def pop_to_mark() -> list[int]:
        nonlocal marks
        items: list[int] = []
        while stack:
            top = stack.pop()
            if top == _MARK:
                marks -= 1
                items.reverse()
                return items
            items.append(top)
        raise _fail(source, "stack has no MARK where an opcode needs one", "a well-formed pickle")

    def pop(n: int) -> list[int]:
        if len(stack) < n or any(v == _MARK for v in stack[len(stack) - n:]):
            raise CheckpointError(f"{source}: found a malformed pickle (stack underflow); expected a checkpoint")
        items = stack[len(stack) - n:]
        del stack[len(stack) - n:]
        return items

    end = offset
    try:
        for op, arg, pos in pickletools.genops(stream):
            opcodes += 1
            pos = int(pos or 0)
            if opcodes > lim.max_opcodes:
                raise _fail(source, f"opcode count exceeds {lim.max_opcodes}", lim.max_opcodes)
            if pos - offset > lim.max_bytes:
                raise _fail(source, f"size exceeds {lim.max_bytes} bytes", lim.max_bytes)
            if isinstance(arg, (bytes, str, bytearray)) and len(arg) > lim.max_string:
                raise _fail(source, f"string at byte {pos} is {len(arg)} long", lim.max_string)
            name = op.name
            if visit is not None:
                visit(name, arg)
            if name == "STOP":
                end = stream.tell()
                break
            if name in ("PROTO", "FRAME"):
                continue
            if name == "MARK":
                marks += 1
                if marks > lim.max_marks:
                    raise _fail(source, f"MARK depth exceeds {lim.max_marks}", lim.max_marks)
                stack.append(_MARK)
                continue
            if name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
                if not stack or stack[-1] == _MARK:
                    raise CheckpointError(f"{source}: found a malformed pickle (memoize of an empty stack)")
                key = len(memo) if name == "MEMOIZE" else int(arg)  # type: ignore[arg-type]
                memo[key] = stack[-1]
                if len(memo) > lim.max_memo:
                    raise _fail(source, f"memo exceeds {lim.max_memo} entries", lim.max_memo)
                continue
            if name in ("GET", "BINGET", "LONG_BINGET"):
                index = int(arg)  # type: ignore[arg-type]
                if index not in memo:
                    raise CheckpointError(f"{source}: found a malformed pickle (memo key {arg} read before it is "
                                          f"set); expected a checkpoint")
                stack.append(memo[index])
                continue
            if name == "DUP":
                stack.append(pop(1)[0])
                stack.append(stack[-1])
                continue
            if name == "POP":
                if stack and stack[-1] == _MARK:
                    stack.pop()
                    marks -= 1
                else:
                    pop(1)
                continue
            if name == "POP_MARK":
                pop_to_mark()
                continue
            if name in _MUTATORS_ONE:
                items = pop(_MUTATORS_ONE[name])
                target = pop(1)[0]
                children[target].extend(items)
                stack.append(target)
                continue
            if name in _MUTATORS_MARK:
                items = pop_to_mark()
                target = pop(1)[0]
                children[target].extend(items)
                stack.append(target)
                continue
            # Every other opcode builds one new object from what it pops (or none: a constant).
            before = op.stack_before
            if pickletools.markobject in before:  # TUPLE, LIST, DICT, FROZENSET, INST, OBJ: all after the MARK
                kids = pop_to_mark()
                kids = pop(before.index(pickletools.markobject)) + kids
            else:
                kids = pop(len(before))
            for _ in op.stack_after:
                stack.append(new_node(kids))
            if len(stack) > lim.max_stack:
                raise _fail(source, f"stack holds more than {lim.max_stack} objects (deep nesting)", lim.max_stack)
        else:
            raise CheckpointError(f"{source}: found a pickle without its STOP opcode (truncated file); expected a "
                                  f"complete checkpoint")
    except CheckpointError:
        raise
    except (ValueError, EOFError, IndexError, OverflowError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{source}: found a truncated or malformed pickle ({exc}); expected a complete "
                              f"checkpoint pickle") from None
    if end - offset > lim.max_bytes:
        raise _fail(source, f"size {end - offset} exceeds {lim.max_bytes} bytes", lim.max_bytes)
    if len(stack) != 1:
        raise CheckpointError(f"{source}: found a malformed pickle ({len(stack)} objects left on its stack, expected "
                              f"1); expected a checkpoint pickle")
    depth, expanded = _measure(children, stack[0], lim, source)
    return PickleStats(end - offset, opcodes, len(memo), depth, expanded)


def _measure(children: list[list[int]], root: int, lim: PickleLimits, source: str) -> tuple[int, int]:
    """Nesting depth and expanded size (shared nodes counted once per reference) of the graph under ``root``,
    by an iterative post-order walk with one result per node; refuses cycles through containers."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    todo: list[tuple[int, bool]] = [(root, False)]
    while todo:
        node, done = todo.pop()
        if done:
            on_path.discard(node)
            kids = children[node]
            total = 1 + sum(size[k] for k in kids)
            level = 1 + max((depth[k] for k in kids), default=0)
            if total > lim.max_expanded:
                raise _fail(source, f"structure expands to more than {lim.max_expanded} objects when its shared "
                                    f"references are followed (a memo bomb)", lim.max_expanded)
            if level > lim.max_depth:
                raise _fail(source, f"nesting depth exceeds {lim.max_depth}", lim.max_depth)
            size[node], depth[node] = total, level
            continue
        if node in size:
            continue
        if node in on_path:
            raise CheckpointError(f"{source}: found a pickle whose structure contains itself (a reference cycle); "
                                  f"expected a tree of dicts, modules and tensors")
        on_path.add(node)
        todo.append((node, True))
        todo.extend((k, False) for k in children[node] if k not in size)
    return depth[root], size[root]
