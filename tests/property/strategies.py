"""Hypothesis strategies for random family trees, and their conversion to ``Step``."""

from __future__ import annotations

import itertools

from hypothesis import strategies as st

from conveyor._proto.examples.shop_pb2 import Step
from tests.support import step

from .model import Spec

MAX_DEPTH = 4
MAX_STEPS = 40
MAX_CHILDREN = 4
MAX_HEIRS = 2

# Lists with the common value first: Hypothesis shrinks towards the first element.
_fail = st.sampled_from([False, False, False, False, True])
_root_fail = st.sampled_from([False] * 9 + [True])
_fail_times = st.sampled_from([0, 0, 0, 1, 2])
_optional = st.sampled_from([False, False, False, True])
_settled_heir = st.booleans()
_delay = st.one_of(st.just(0.0), st.sampled_from([0.01, 0.02, 0.03, 0.04, 0.05]))
# A child's key, scoped to its declarer so that only siblings share one (rule 15).
_key = st.sampled_from(["", "", "", "k0", "k1"])
_sleep = st.one_of(st.just(0.0), st.sampled_from([0.002, 0.005, 0.01]))


@st.composite
def trees(draw: st.DrawFn, max_depth: int = MAX_DEPTH, max_steps: int = MAX_STEPS) -> Spec:
    """A root step and, nested in it, up to ``max_steps`` steps in all.

    Children and heirs both nest one level deeper than their declarer, down to
    ``max_depth`` (the root is at depth 0). Every step gets a unique name.
    The tree grows breadth first, so that the cap on its size does not starve
    the upper levels of heirs.
    """
    names = itertools.count()
    # The size is drawn first, so that small and large trees are equally likely
    # (fan-outs alone would make nearly every deep tree hit the cap).
    left = draw(st.integers(1, max_steps)) - 1

    def make(role: str) -> Spec:
        return Spec(
            name=f"s{next(names)}",
            fail=draw(_root_fail if role == "root" else _fail),
            fail_times=draw(_fail_times),
            sleep=draw(_sleep),
            optional=draw(_optional) if role == "child" else False,
            settled_heir=draw(_settled_heir) if role == "heir" else False,
            delay=draw(_delay) if role != "root" else 0.0,
            key=draw(_key) if role == "child" else "",
        )

    root = make("root")
    level = [root]
    for _ in range(max_depth):
        below: list[Spec] = []
        for spec in level:
            children = min(draw(st.integers(0, MAX_CHILDREN)), left)
            left -= children
            heirs = min(draw(st.integers(0, MAX_HEIRS)), left)
            left -= heirs
            spec.children = [make("child") for _ in range(children)]
            for child in spec.children:
                if child.key:
                    child.key = f"{spec.name}/{child.key}"
            spec.heirs = [make("heir") for _ in range(heirs)]
            below += spec.children + spec.heirs
        level = below
    return root


def to_step(spec: Spec) -> Step:
    """The ``Step`` payload that makes ``tests.support.step_worker`` act out ``spec``."""
    return step(
        spec.name,
        children=[to_step(child) for child in spec.children],
        heirs=[to_step(heir) for heir in spec.heirs],
        fail=spec.fail,
        fail_times=spec.fail_times,
        sleep=spec.sleep,
        optional=spec.optional,
        settled_heir=spec.settled_heir,
        delay=spec.delay,
        key=spec.key,
    )


def render(spec: Spec, indent: str = "", role: str = "root") -> str:
    """A readable outline of a tree, for failure reports."""
    flags = [role]
    if spec.fail:
        flags.append("fail")
    if spec.fail_times:
        flags.append(f"fail_times={spec.fail_times}")
    if spec.optional:
        flags.append("optional")
    if spec.key:
        flags.append(f"key={spec.key}")
    if role == "heir":
        flags.append("when=SETTLED" if spec.settled_heir else "when=SUCCEEDED")
    if spec.delay:
        flags.append(f"delay={spec.delay}")
    if spec.sleep:
        flags.append(f"sleep={spec.sleep}")
    lines = [f"{indent}{spec.name} ({', '.join(flags)})"]
    lines += [render(child, indent + "  ", "child") for child in spec.children]
    lines += [render(heir, indent + "  ", "heir") for heir in spec.heirs]
    return "\n".join(lines)
