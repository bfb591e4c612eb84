"""The QuotaStore contract: a take is refused once the owner's set is full, racing takes
cannot pass the limit together, and owners and kinds are apart."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from chalicelib.ports import Store


def test_take_up_to_the_limit_release_and_take_again(store: Store) -> None:
    assert store.take_quota("alice", "jobs", "a@1", 2)
    assert store.take_quota("alice", "jobs", "a@1", 2)  # again: already held
    assert store.take_quota("alice", "jobs", "b@1", 2)
    assert not store.take_quota("alice", "jobs", "c@1", 2)
    assert store.take_quota("alice", "runs", "c@1", 2)  # another kind
    assert store.take_quota("bob", "jobs", "c@1", 2)  # another owner
    assert store.quota_members("alice", "jobs") == {"a@1", "b@1"}
    store.release_quota("alice", "jobs", ["a@1", "never@1"])
    store.release_quota("carol", "jobs", ["x@1"])  # no record: nothing to do
    assert store.take_quota("alice", "jobs", "c@1", 2)
    assert store.quota_members("alice", "jobs") == {"b@1", "c@1"}
    assert store.quota_members("nobody", "jobs") == set()


def test_racing_takes_do_not_pass_the_limit(store: Store) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        taken = list(pool.map(lambda i: store.take_quota("o", "runs", f"r{i}@1", 5), range(20)))
    assert sum(taken) == 5
    assert len(store.quota_members("o", "runs")) == 5
