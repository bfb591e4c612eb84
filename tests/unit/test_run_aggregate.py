"""The run aggregate: its transitions' sources come from the execution table, their guards
and effects, without a store."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chalicelib.domain.runs import MissReason, Run, RunTransition
from chalicelib.domain.transitions import EX_MACHINE, TERMINAL_EX, ExStatus

T = 1_800_000_000.0


def _run(**kw: object) -> Run:
    run = Run("job", "slot", "ex", scheduled_start=T, config={"lease_seconds": 30})
    return replace(run, **kw)  # type: ignore[arg-type]  # test fixtures: any field


def _every(run: Run) -> dict[str, RunTransition]:
    return {
        "claim_inline": run.claim_inline("t", T, T),
        "claim_unread": run.claim_inline("t", T, T, unread=True),
        "claim_initializing": run.claim_initializing("t", T + 30, T),
        "take_over": run.take_over("t2", T),
        "set_going": run.set_going("t", 3, T),
        "complete_unsliced": run.complete_unsliced(T, T),
        "complete_inline": run.complete_inline("t", 1, T, T),
        "retry_inline": run.retry_inline("t", T, 2, "boom"),
        "fail_inline": run.fail_inline("t", T, "boom"),
        "give_up_inline": run.give_up_inline(T, "lost"),
        "fail_unsliced": run.fail_unsliced(T, "bad reader"),
        "time_out": run.time_out(T, "idle"),
        "hand_out_next": run.hand_out_next(T),
        "finalize": run.finalize(T),
        "stop_pending": run.stop_pending(T, "asked"),
        "ask_stop": run.ask_stop(T, "asked"),
        "stop": run.stop(T),
        "bump": run.bump(T),
        "pause": run.pause(T),
        "resume": run.resume(T),
        "set_workers": run.set_workers(4, T),
        "skip": run.skip(T, MissReason.overlap),
        "miss": run.miss(T, MissReason.misfire),
    }


@pytest.mark.parametrize(
    "name",
    [n for n in sorted(_every(_run()))],
)
def test_every_transition_moves_along_the_table(name: str) -> None:
    transition = _every(_run(status=ExStatus.running))[name]
    assert transition.sources, "a transition that can never apply"
    for source in transition.sources:
        if transition.target is None:
            assert source not in TERMINAL_EX
        else:
            assert EX_MACHINE.allows(source, transition.target) or (
                source == transition.target and source not in TERMINAL_EX
            )
    assert "status" not in transition.sets  # the status is the target, never a field


def test_failing_is_written_once_whoever_fails_the_run() -> None:
    run = _run(status=ExStatus.running, inline=True, attempts=4, lease_token="t", check_at=T)
    fails = [
        run.fail_inline("t", T, "boom"),
        run.give_up_inline(T, "lost"),
        run.fail_unsliced(T, "bad reader"),
        run.time_out(T, "idle"),
    ]
    for transition in fails:
        assert transition.target == ExStatus.failed
        assert {"has_errors", "finished_at", "updated", "errors"} <= set(transition.sets)
    assert [t.sets.get("failed") for t in fails] == [1, 1, None, None]  # a one-slice run's


def test_guard_conditions_are_checked_on_the_stored_record() -> None:
    run = _run(status=ExStatus.running, lease_token="a", lease_expires_at=T + 10)
    claim = run.claim_inline("b", T, T)
    assert not claim.admits(run, run)  # its lease is alive
    assert claim.admits(replace(run, lease_expires_at=T - 1), run)
    assert run.complete_inline("a", None, T, T).admits(run, run)
    assert not run.complete_inline("b", None, T, T).admits(run, run)
    sliced = _run(status=ExStatus.running, slices_total=2, queued_cursor=2)
    assert not sliced.hand_out_next(T).admits(sliced, sliced)
    assert sliced.hand_out_next(T).admits(replace(sliced, queued_cursor=1), sliced)
    unread = _run().claim_inline("t", T, T, unread=True)
    assert unread.admits(_run(), _run())
    assert not unread.admits(_run(buffered=True), _run())
    assert not unread.admits(_run(ex_id="other"), _run())
    assert not unread.admits(_run(status=ExStatus.initializing), _run())


def test_an_ended_run_lets_go_of_its_lease_check_and_slot() -> None:
    run = _run(
        status=ExStatus.running,
        remaining=0,
        lease_token="a",
        lease_expires_at=T,
        check_at=T,
        holds_slot=True,
        attempts=1,
    )
    done = run.finalize(T + 5).applied_to(run)
    assert done.status == ExStatus.completed and done.finished_at == T + 5
    assert (done.lease_token, done.lease_expires_at, done.check_at) == (None, None, None)
    assert not done.holds_slot and done.tally_pending
    claimed = _run().claim_inline("t", T + 2, T).applied_to(_run())
    assert claimed.status == ExStatus.running and claimed.attempts == 1
    assert claimed.lease_expires_at == T + 32 and claimed.check_at == T + 33
