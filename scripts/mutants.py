"""Mutation testing of the pure core, by hand: does the test suite notice a broken rule?

Run by hand:  .venv/bin/python scripts/mutants.py [--jobs 2] [--only NAME]

Each mutant below is one realistic bug in ``orchestrator/core`` (a rule of DESIGN.md
dropped or bent, an off-by-one in a budget, a resume that forgets something). For each,
the script copies the project to a temporary directory, applies the one change, and
runs the core's tests there (``tests/orchestrator``, the property tests at the ``ci``
profile); a mutant is *killed* when they fail. It prints each result, how long the
tests took to notice, and the total. A mutant that survives is a hole in the tests, or
a change that does not change behaviour (then say why in ``EQUIVALENT``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    old: str
    new: str
    why: str


MUTANTS = [
    Mutant(
        "rule3-in-flight",
        "orchestrator/core/decide.py",
        "        if st.phase is Phase.RUNNING:\n            return False\n",
        "",
        "rule 3: compensate while a descendant is still in flight",
    ),
    Mutant(
        "rule3-direct-children-only",
        "orchestrator/core/decide.py",
        "    for d in wf.descendants[name]:\n        st = steps.get(d)",
        "    for d in (x for x in wf.descendants[name] if name in wf.steps[x].deps):\n"
        "        st = steps.get(d)",
        "rule 3 through a step with no compensation: only direct children are waited for",
    ),
    Mutant(
        "rule3-ignores-uncompensated",
        "orchestrator/core/decide.py",
        "            if comp is None or comp.phase is not Phase.SUCCEEDED:\n"
        "                return False",
        "            if comp is not None and comp.phase is Phase.RUNNING:\n"
        "                return False",
        "rule 3: a descendant's compensation not yet started does not hold its ancestor",
    ),
    Mutant(
        "rule4-new-compensation-after-give-up",
        "orchestrator/core/decide.py",
        "                    s.compensation_failure is None\n                    and pivot is None",
        "                    pivot is None",
        "rule 4: a new compensation starts after another gave up for good",
    ),
    Mutant(
        "rule4-give-up-not-alone",
        "orchestrator/core/decide.py",
        "            return give_ups or commands",
        "            return give_ups + commands",
        "rule 4: compensations start in the same decision as a give-up",
    ),
    Mutant(
        "resume-no-fresh-budget",
        "orchestrator/core/evolve.py",
        "round_start=st.attempt + 1, command=None)",
        "round_start=st.round_start, command=None)",
        "a resume does not give what failed a fresh retry budget",
    ),
    Mutant(
        "rule1-budget-ignored",
        "orchestrator/core/decide.py",
        "            if not (st.retryable and wf.steps[name].retry.allows(used)):",
        "            if not st.retryable:",
        "rule 1: a step is retried past its budget",
    ),
    Mutant(
        "rule1-retry-after-abort",
        "orchestrator/core/evolve.py",
        "    if not e.compensation and s.aborted:\n        return s",
        "    if False:\n        return s",
        "rule 1: a forward retry timer still starts a step after the saga aborted",
    ),
    Mutant(
        "rule5-compensate-past-pivot",
        "orchestrator/core/decide.py",
        "                        compensate=_pivot_passed(wf, s) is None,",
        "                        compensate=True,",
        "rule 5: compensation after a pivot succeeded",
    ),
    Mutant(
        "rule5-pivot-never-passed",
        "orchestrator/core/decide.py",
        "        if st is not None and st.phase is Phase.SUCCEEDED:\n            return pivot",
        "        if st is not None and st.phase is Phase.RUNNING:\n            return pivot",
        "rule 5: a succeeded pivot is not noticed",
    ),
    Mutant(
        "compensation-retries-fatal",
        "orchestrator/core/decide.py",
        "                if comp.retryable and spec.retry.allows(used):",
        "                if spec.retry.allows(used):",
        "a non-retryable compensation failure is retried",
    ),
    Mutant(
        "budget-off-by-one",
        "orchestrator/core/decide.py",
        "    return st.attempt - st.round_start + 1",
        "    return st.attempt - st.round_start",
        "one attempt more than the retry policy allows",
    ),
    Mutant(
        "allows-off-by-one",
        "orchestrator/core/policy.py",
        "attempts < self.max_attempts",
        "attempts <= self.max_attempts",
        "RetryPolicy.allows lets one attempt too many",
    ),
    Mutant(
        "finish-with-steps-in-flight",
        "orchestrator/core/decide.py",
        "    for st in s.steps.values():\n        if st.phase is Phase.RUNNING:\n"
        "            return []\n",
        "",
        "the saga ends while forward steps are still running",
    ),
    Mutant(
        "start-before-deps",
        "orchestrator/core/decide.py",
        "                if dep_st is None or dep_st.phase is not Phase.SUCCEEDED:",
        "                if dep_st is None:",
        "a step starts before its dependencies succeeded",
    ),
    Mutant(
        "data-without-ancestors",
        "orchestrator/core/decide.py",
        "        output = steps[ancestor].output\n        if output:",
        "        output = steps[ancestor].output\n        if output and len(data) < 0:",
        "a step does not receive its ancestors' outputs",
    ),
    Mutant(
        "compensation-without-output",
        "orchestrator/core/decide.py",
        "    output = s.steps[name].output\n    if output:\n        data.update(output)",
        "    output = s.steps[name].output",
        "a compensation does not receive the output of the step it undoes",
    ),
    Mutant(
        "retry-due-past-cap",
        "orchestrator/core/decide.py",
        "        due_at=failed_at + policy.delay(_used(st), key),",
        "        due_at=failed_at + policy.max_interval * 2 + 1,",
        "a retry is scheduled later than the policy's cap",
    ),
    Mutant(
        "late-outcome-accepted",
        "orchestrator/core/evolve.py",
        "    return st is not None and st.phase is Phase.RUNNING and st.attempt == attempt",
        "    return st is not None and st.attempt == attempt",
        "an outcome for an attempt that already has one is recorded again",
    ),
    Mutant(
        "resume-drops-timers",
        "orchestrator/core/react.py",
        "        if st.phase is Phase.RUNNING or "
        "(st.phase is Phase.WAITING and not state.aborted):",
        "        if st.phase is Phase.RUNNING:",
        "after a crash, retry timers not fired yet are not rebuilt from the log",
    ),
    Mutant(
        "resume-drops-compensations",
        "orchestrator/core/react.py",
        "        if st is not None and st.command is not None:\n            out.append(st.command)",
        "        if st is not None and st.command is not None and st.attempt > 1:\n"
        "            out.append(st.command)",
        "after a crash, first compensation attempts in flight are not re-issued",
    ),
    Mutant(
        "forward-resume-no-fresh-budget",
        "orchestrator/core/evolve.py",
        "        n: st if st.phase is Phase.SUCCEEDED or st.phase is Phase.RUNNING else again(st)",
        "        n: st\n        if st.phase is Phase.SUCCEEDED or st.phase is Phase.RUNNING\n"
        "        else replace(st, phase=Phase.READY, command=None)",
        "a resume past a pivot re-runs the failed step without a fresh retry budget",
    ),
    Mutant(
        "resume-skips-given-up",
        "orchestrator/core/evolve.py",
        "        comps = {n: again(c) if c.phase is Phase.GAVE_UP else c "
        "for n, c in s.compensations.items()}",
        "        comps = dict(s.compensations)",
        "a resume does not re-run the compensation that gave up",
    ),
]

EQUIVALENT: dict[str, str] = {
    "rule4-give-up-not-alone": (
        "(equivalent: a give-up is decided right after the CompensationFailed that caused "
        "it, and a decision is level-triggered, so nothing else is ever pending in that "
        "same decision: `commands` is always empty when `give_ups` is not)"
    ),
}
"""Mutants that cannot change behaviour, with the reason."""

TESTS = ["tests/orchestrator", "-x", "-q", "-p", "no:cacheprovider", "--hypothesis-profile", "ci"]


def run(mutant: Mutant, timeout: float) -> tuple[Mutant, str, float]:
    """``killed`` / ``survived`` / ``timeout`` / ``broken`` (the change did not apply)."""
    with tempfile.TemporaryDirectory(prefix="mutant-") as tmp:
        work = Path(tmp)
        for part in ("orchestrator", "eventstore", "brokers", "tests", "workflows"):
            shutil.copytree(ROOT / part, work / part, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(ROOT / "pyproject.toml", work / "pyproject.toml")
        target = work / mutant.path
        text = target.read_text()
        if text.count(mutant.old) != 1:
            return mutant, "broken", 0.0
        target.write_text(text.replace(mutant.old, mutant.new))
        began = time.monotonic()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "pytest", *TESTS],
                cwd=work,
                capture_output=True,
                text=True,
                timeout=timeout,
                env={"PYTHONPATH": str(work), "PATH": "/usr/bin:/bin"},
            )
        except subprocess.TimeoutExpired:
            return mutant, "timeout", time.monotonic() - began
        took = time.monotonic() - began
        if done.returncode not in (0, 1):  # 2: the tests could not even be collected
            return mutant, f"broken (pytest exit {done.returncode})", took
        return mutant, "killed" if done.returncode == 1 else "survived", took


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", help="run one mutant, by name")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if args.only in (None, m.name)]
    if not chosen:
        sys.exit(f"no mutant {args.only!r}; known: {', '.join(m.name for m in MUTANTS)}")
    killed = 0
    with ThreadPoolExecutor(args.jobs) as pool:
        for mutant, result, took in pool.map(lambda m: run(m, args.timeout), chosen):
            killed += result == "killed"
            note = EQUIVALENT.get(mutant.name, "")
            print(f"{result:<9} {took:6.1f} s  {mutant.name:<38} {mutant.why} {note}", flush=True)
    equivalent = sum(m.name in EQUIVALENT for m in chosen)
    print(f"\n{killed} of {len(chosen)} mutants killed; {equivalent} equivalent (explained above)")


if __name__ == "__main__":
    main()
