"""The trainings queue's order and walk (pure code): priorities, fair share between users,
aging, per-user concurrency, holding for a training that waits too long, and the words
that explain a position."""

from __future__ import annotations

from gpupool.pool.trainings.queue import Policy, Use, Waiting, explain, order, walk

NOW = 1_000_000.0
POLICY = Policy(aging_seconds=600, per_user_running=2, hold_after=900)


def w(tid: str, owner: str = "ann", priority: int = 0, age: float = 0.0) -> Waiting:
    return Waiting(tid, owner, priority, NOW - age)


def ids(ranked) -> list[str]:  # type: ignore[no-untyped-def]
    return [r.training.id for r in ranked]


def test_higher_priority_first_then_older_first() -> None:
    q = [w("low", priority=-1, age=50), w("old", age=30), w("new", age=10), w("high", priority=3)]
    got = order(q, now=NOW, policy=Policy(aging_seconds=10_000))
    # one user: their own order is priority, then age
    assert ids(got) == ["high", "old", "new", "low"]
    assert [r.position for r in got] == [1, 2, 3, 4]


def test_fair_share_round_robin_and_least_recent_use_first() -> None:
    q = [w("a1", "ann", age=40), w("a2", "ann", age=30), w("a3", "ann", age=20), w("b1", "bob")]
    use = {"ann": Use(gpu_hours=1.0), "bob": Use(gpu_hours=5.0)}
    got = order(q, now=NOW, policy=Policy(aging_seconds=10_000), use=use)
    # everyone's first before anyone's second; between firsts, ann (less use) leads
    assert ids(got) == ["a1", "b1", "a2", "a3"]
    use = {"ann": Use(gpu_hours=9.0), "bob": Use(gpu_hours=0.5)}
    got = order(q, now=NOW, policy=Policy(aging_seconds=10_000), use=use)
    assert ids(got) == ["b1", "a1", "a2", "a3"]
    # equal GPU-hours: the cost decides
    use = {"ann": Use(1.0, cost=3.0), "bob": Use(1.0, cost=2.0)}
    assert ids(order(q, now=NOW, policy=Policy(aging_seconds=10_000), use=use))[0] == "b1"


def test_aging_lifts_a_long_waiting_training_over_newer_higher_priority_work() -> None:
    q = [w("patient", priority=0, age=1300), w("urgent", "bob", priority=2, age=5)]
    got = order(q, now=NOW, policy=POLICY)  # 1300 s / 600 s = +2 levels
    assert got[0].effective_priority == 2 and got[1].effective_priority == 2
    assert ids(got) == ["patient", "urgent"]  # tie on priority: ann's first vs bob's first, older
    got = order([w("patient", age=1900), w("urgent", "bob", priority=2)], now=NOW, policy=POLICY)
    assert ids(got) == ["patient", "urgent"] and got[0].effective_priority == 3
    got = order([w("patient", age=500), w("urgent", "bob", priority=2)], now=NOW, policy=POLICY)
    assert ids(got) == ["urgent", "patient"]


def test_no_starvation_under_a_stream_of_higher_priority_work() -> None:
    """A priority-0 training waits while priority-1 work keeps arriving; aging puts it
    first within a bounded time."""
    waited = None
    for minute in range(0, 120):
        age = minute * 60.0
        q = [w("old", age=age), w(f"new{minute}", "bob", priority=1, age=1.0)]
        if ids(order(q, now=NOW, policy=POLICY))[0] == "old":
            waited = age
            break
    assert waited is not None and waited <= 2 * POLICY.aging_seconds


def test_walk_respects_per_user_concurrency_and_starts_the_others() -> None:
    q = order(
        [w("a1", age=30), w("a2", age=20), w("b1", "bob", age=10)],
        now=NOW,
        policy=POLICY,
    )
    tried: list[str] = []

    def attempt(x: Waiting) -> str | None:
        tried.append(x.id)
        return None

    out = walk(q, running={"ann": 1}, policy=POLICY, now=NOW, attempt=attempt)
    # ann runs one, may run two: a1 starts, a2 waits for her concurrency; bob starts
    assert out.started == ["a1", "b1"]
    assert tried == ["a1", "b1"]
    assert "ann has 2 training(s) running; at most 2" in out.why["a2"]


def test_walk_backfills_until_the_blocked_training_has_waited_hold_after() -> None:
    q = order([w("big", age=100), w("small", "bob", age=50)], now=NOW, policy=POLICY)

    def attempt(x: Waiting) -> str | None:
        return "waits for capacity: no node has 2 empty A100 cards" if x.id == "big" else None

    out = walk(q, running={}, policy=POLICY, now=NOW, attempt=attempt)
    assert out.started == ["small"]  # backfill: big does not fit, small does
    assert out.why["big"].startswith("waits for capacity")

    q = order([w("big", age=1000), w("small", "bob", age=50)], now=NOW, policy=POLICY)
    out = walk(q, running={}, policy=POLICY, now=NOW, attempt=attempt)
    assert out.started == []  # big has waited past hold_after: the pool holds for it
    assert out.why["small"].startswith("held: big, ahead of it in the queue, has waited 17 min")


def test_a_quota_refusal_does_not_hold_anyone() -> None:
    q = order([w("over", age=5000), w("fine", "bob")], now=NOW, policy=POLICY)

    def attempt(x: Waiting) -> str | None:
        return "waits for quota: over the quota: at most 1 GPU(s)" if x.id == "over" else None

    out = walk(q, running={}, policy=POLICY, now=NOW, attempt=attempt)
    assert out.started == ["fine"] and out.why["over"].startswith("waits for quota")


def test_explain_says_position_priority_and_why() -> None:
    q = order([w("a", age=1300), w("b", "bob", priority=1)], now=NOW, policy=POLICY)
    text = explain(q[0], 2, "waits for capacity: no node has a free A100")
    assert text == (
        "1st of 2 in the queue (priority 0, +2 for waiting); "
        "waits for capacity: no node has a free A100"
    )
    assert explain(q[1], 12, "").startswith("2nd of 12 in the queue (priority 1)")
