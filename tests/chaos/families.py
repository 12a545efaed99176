"""Families for the chaos tests: three levels, heirs at every level, some slow jobs,
some that fail once, and a few that fail for good (so that some heirs' conditions do
not hold, and "never otherwise" is tested too)."""

from __future__ import annotations

import random

from conveyor._proto.examples.shop_pb2 import Step


def family(
    tag: str,
    rng: random.Random,
    *,
    doomed: bool,
    branches: int = 10,
    subs: int = 10,
    leaves: int = 8,
) -> Step:
    """``root`` → ``branches`` branches → ``subs`` subs each → ``leaves`` leaves each.

    Heirs: each sub has a SUCCEEDED heir, each branch a SETTLED heir, the root a
    SUCCEEDED heir. About 1 leaf in 12 sleeps 0.2-0.6 s, 1 in 8 fails once, and (in a
    ``doomed`` family) 1 sub in 15 holds a leaf that always fails (its sub fails, so its SUCCEEDED heir is
    cancelled; the branch's SETTLED heir runs anyway; the root fails, so its heir is
    cancelled). With the defaults: 1 + 10 + 100 + 800 + 100 + 10 + 1 = 1,022 jobs.
    """
    branch_steps = []
    for b in range(branches):
        sub_steps = []
        for s in range(subs):
            lost = doomed and rng.random() < 1 / 15
            leaf_steps = []
            for leaf in range(leaves):
                name = f"{tag}/b{b}/s{s}/l{leaf}"
                leaf_steps.append(
                    Step(
                        name=name,
                        sleep_seconds=rng.uniform(0.2, 0.6) if rng.random() < 1 / 12 else 0.0,
                        fail_times=1 if rng.random() < 1 / 8 else 0,
                        fail=lost and leaf == 0,
                    )
                )
            sub_steps.append(
                Step(
                    name=f"{tag}/b{b}/s{s}",
                    children=leaf_steps,
                    heirs=[Step(name=f"{tag}/b{b}/s{s}/heir")],
                )
            )
        branch_steps.append(
            Step(
                name=f"{tag}/b{b}",
                children=sub_steps,
                heirs=[Step(name=f"{tag}/b{b}/heir", settled_heir=True)],
            )
        )
    return Step(name=f"{tag}/root", children=branch_steps, heirs=[Step(name=f"{tag}/heir")])


def size(step: Step) -> int:
    """Jobs in the tree (heirs included)."""
    return 1 + sum(size(c) for c in step.children) + sum(size(h) for h in step.heirs)
