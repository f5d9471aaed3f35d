"""Fuzzed TrainingJobs and HyperparamSweeps through the real apiserver, webhook and operator (issue 13).

Pins, for every object Hypothesis generates (support/fuzz_objects.py: valid, near-valid and hostile, of
both kinds), created from a client that asks for no field validation:
- the answer is a success or a 4xx whose message names a field path (`spec...` or `metadata...`): never a
  5xx, a webhook timeout, "failed calling webhook", or a refusal that does not say where;
- every accepted object is reconciled: a `status.phase` or an `InvalidSpec` condition within a deadline
  (pods stay Pending, there is no node agent: phase Pending counts), and so is every TrainingJob the
  operator itself creates (sweep trials);
- at the end the operator is the process it started as (alive, never restarted), and its log holds no
  Traceback and no ERROR line.

Accepted objects are settled and deleted in batches (`BATCH`), so a long run keeps a small cluster.

`make test` runs `SMALL_EXAMPLES` objects, derandomized (the same objects every run); `make fuzz` (or
`TRAINSMART_FUZZ_EXAMPLES=1000 pytest tests/fuzz -s`) runs more and prints the figures: objects tried,
accepted, refused with a path, webhook errors and timeouts, operator tracebacks, admission latency.
`TRAINSMART_FUZZ_SEED` replaces the derandomized run by a seeded one.
"""

from __future__ import annotations

import itertools
import os
import re
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

import pytest
from hypothesis import HealthCheck, given, seed, settings
from kubernetes import client

from support.fuzz_objects import Fuzzed, RawApi, encode, fuzzed_objects
from trainsmart.api import GROUP, SWEEP_PLURAL, TRAININGJOB_PLURAL, VERSION

pytestmark = [pytest.mark.cluster]

SMALL_EXAMPLES: Final = 40
EXAMPLES: Final = int(os.environ.get("TRAINSMART_FUZZ_EXAMPLES", SMALL_EXAMPLES))
SEED: Final = os.environ.get("TRAINSMART_FUZZ_SEED")
BATCH: Final = 50
"""Accepted objects settled (reconciled, then deleted) at a time."""
SETTLE_S: Final = 90.0
"""How long a batch of accepted objects may take to get a phase or InvalidSpec."""
PATH_RE: Final = re.compile(r"\b(spec|metadata)(\.|\[|:|\b)")
LOG_PROBLEM_RE: Final = re.compile(r"Traceback|\[(ERROR|CRITICAL)\s*\]")
WEBHOOK_FAILURE: Final = ("failed calling webhook", "deadline exceeded", "Timeout: request did not complete")
PLURALS: Final = {"TrainingJob": TRAININGJOB_PLURAL, "HyperparamSweep": SWEEP_PLURAL}


@dataclass
class Outcome:
    fuzzed: Fuzzed
    verdict: str
    """accepted, refused, webhook-error or no-path."""
    status: int
    message: str
    seconds: float


@dataclass
class FuzzRecord:
    namespace: str
    api: RawApi
    outcomes: list[Outcome] = field(default_factory=list)
    unsettled: list[str] = field(default_factory=list)
    """Accepted objects (kind/name) that got neither a phase nor InvalidSpec in time."""
    pending: dict[str, str] = field(default_factory=dict)
    """Accepted objects not yet settled: kind/name -> uid."""

    def path(self, kind: str, name: str = "") -> str:
        base = f"/apis/{GROUP}/{VERSION}/namespaces/{self.namespace}/{PLURALS[kind]}"
        return f"{base}/{name}" if name else base

    def create(self, fuzzed: Fuzzed) -> Outcome:
        body = encode(fuzzed.body)
        started = time.perf_counter()
        status, answer = self.api.request("POST", self.path(fuzzed.kind), body)
        seconds = time.perf_counter() - started
        if status in (200, 201):
            outcome = Outcome(fuzzed, "accepted", status, "", seconds)
            self.pending[f"{fuzzed.kind}/{answer['metadata']['name']}"] = answer["metadata"]["uid"]
        else:
            outcome = classify(fuzzed, status, str(answer.get("message", answer)), seconds)
        self.outcomes.append(outcome)
        if len(self.pending) >= BATCH:
            self.settle()
        return outcome

    def settle(self) -> None:
        """Wait until every pending object (and every TrainingJob of the namespace, trials included) has
        a phase or InvalidSpec, record those that did not, then delete the pending ones."""
        deadline = time.monotonic() + SETTLE_S
        waiting = self._unreconciled()
        while waiting and time.monotonic() < deadline:
            time.sleep(0.5)
            waiting = self._unreconciled()
        self.unsettled += sorted(waiting)
        for key in self.pending:
            kind, name = key.split("/", 1)
            status, answer = self.api.request("DELETE", self.path(kind, name))
            assert status in (200, 202, 404), answer
        self.pending.clear()

    def _unreconciled(self) -> set[str]:
        waiting = set()
        for kind in PLURALS:
            status, listed = self.api.request("GET", self.path(kind))
            assert status == 200, listed
            for item in listed["items"]:
                key = f"{kind}/{item['metadata']['name']}"
                trial = kind == "TrainingJob" and item["metadata"].get("ownerReferences")
                if (key in self.pending or trial) and not reconciled(item):
                    waiting.add(key)
        return waiting


def classify(fuzzed: Fuzzed, status: int, message: str, seconds: float) -> Outcome:
    if status >= 500 or status < 400 or any(sign in message for sign in WEBHOOK_FAILURE):
        verdict = "webhook-error"
    elif PATH_RE.search(message):
        verdict = "refused"
    else:
        verdict = "no-path"
    return Outcome(fuzzed, verdict, status, message, seconds)


def reconciled(item: dict[str, Any]) -> bool:
    status = item.get("status") or {}
    conditions = status.get("conditions") or []
    invalid = any(c.get("type") == "InvalidSpec" and c.get("status") == "True" for c in conditions)
    return bool(status.get("phase")) or invalid


def log_problems(log: str) -> list[str]:
    """Tracebacks and ERROR lines of an operator log, with the line after each for context."""
    lines = log.splitlines()
    return [" | ".join(lines[i : i + 3]) for i, line in enumerate(lines) if LOG_PROBLEM_RE.search(line)]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def figures(record: FuzzRecord, problems: list[str], alive: bool) -> str:
    verdicts = Counter(outcome.verdict for outcome in record.outcomes)
    families = Counter((o.fuzzed.family, o.verdict) for o in record.outcomes)
    latencies = [outcome.seconds * 1000 for outcome in record.outcomes]
    rows = [
        f"objects tried              {len(record.outcomes)}",
        f"accepted                   {verdicts['accepted']}",
        f"refused with a field path  {verdicts['refused']}",
        f"refused without a path     {verdicts['no-path']}   (goal 0)",
        f"webhook errors/timeouts    {verdicts['webhook-error']}   (goal 0)",
        f"accepted, never reconciled {len(record.unsettled)}   (goal 0)",
        f"operator log problems      {len(problems)}   (Tracebacks/ERROR lines, goal 0)",
        f"operator alive, 0 restarts {'yes' if alive else 'NO'}",
        f"admission latency          p50 {percentile(latencies, 0.5):.1f} ms, "
        f"p99 {percentile(latencies, 0.99):.1f} ms, max {max(latencies, default=0):.1f} ms, "
        f"mean {statistics.fmean(latencies) if latencies else 0:.1f} ms",
        "by family                  "
        + ", ".join(f"{family}/{verdict} {count}" for (family, verdict), count in sorted(families.items())),
    ]
    return "\n".join(["", "fuzz figures (issue 13)", *rows])


def describe(outcome: Outcome) -> str:
    body = encode(outcome.fuzzed.body).decode()
    return f"{outcome.fuzzed.how}: HTTP {outcome.status}: {outcome.message[:400]}\n    body: {body[:600]}"


@pytest.mark.timeout(600 + 3 * EXAMPLES)
def test_fuzzed_objects_are_admitted_or_refused_with_a_path_and_reconciled(
    fuzz_cluster: Any, api_client: client.ApiClient
) -> None:
    record = FuzzRecord(fuzz_cluster.namespace, RawApi(api_client))
    process = fuzz_cluster.operator.process
    names = (f"fz-{index}" for index in itertools.count())

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=SEED is None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(fuzzed_objects(lambda: next(names)))
    def admit(fuzzed: Fuzzed) -> None:
        record.create(fuzzed)

    if SEED is not None:
        admit = seed(int(SEED))(admit)
    admit()
    record.settle()

    problems = log_problems(fuzz_cluster.operator.log_path.read_text(errors="replace"))
    alive = fuzz_cluster.operator.process is process and fuzz_cluster.operator.running
    print(figures(record, problems, alive))
    print(f"operator log: {fuzz_cluster.operator.log_path}")

    bad = [outcome for outcome in record.outcomes if outcome.verdict in ("webhook-error", "no-path")]
    assert not bad, "\n".join(describe(outcome) for outcome in sorted(bad, key=lambda o: len(encode(o.fuzzed.body))))
    assert not record.unsettled, f"accepted but never reconciled: {record.unsettled[:20]}"
    assert alive, f"the operator died or was restarted:\n{fuzz_cluster.operator.tail()}"
    assert not problems, "\n".join(problems[:20])
