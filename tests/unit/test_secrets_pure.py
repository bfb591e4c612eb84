"""Secret references, pure: parsing, checking against the prefix, substituting, redacting."""

from __future__ import annotations

import pytest

from chalicelib.domain.errors import InvalidInput
from chalicelib.domain.secrets import (
    SecretRef,
    Substitution,
    check_operations,
    check_references,
    has_references,
    redact,
)

P = "/cadenza/dev/"


def test_references_anywhere_in_a_string_each_read_once() -> None:
    reads: list[SecretRef] = []

    def lookup(ref: SecretRef) -> str:
        reads.append(ref)
        return {"/cadenza/dev/u": "alice", "/cadenza/dev/p": "pw"}[ref.name]

    sub = Substitution(lookup, P)
    value = {"dsn": "{{resolve:ssm:/cadenza/dev/u}}:{{ resolve:secretsmanager:/cadenza/dev/p }}"}
    assert sub.value([value, value]) == [{"dsn": "alice:pw"}, {"dsn": "alice:pw"}]
    assert [r.name for r in reads] == ["/cadenza/dev/u", "/cadenza/dev/p"]
    assert sub.redact({"out": "alice said pw"}) == {"out": "*** said ***"}
    assert sub.text("no reference {{here}}") == "no reference {{here}}"


def test_checks_name_the_field_and_refuse_what_is_outside() -> None:
    assert check_references("args", "-u {{resolve:ssm:/cadenza/dev/u}}", P) == [
        SecretRef("ssm", "/cadenza/dev/u")
    ]
    for bad in ("/cadenza/prod/x", "/cadenza/dev//x", "/cadenza/dev/a/../../prod/x", "x y"):
        with pytest.raises(InvalidInput) as err:
            check_references("args", "{{resolve:ssm:" + bad + "}}", P)
        assert err.value.details["errors"] == [{"field": "args", "reason": err.value.message[6:]}]
    with pytest.raises(InvalidInput, match=r"operations\[0\]\.x"):
        check_operations([{"_op": "noop", "x": "{{resolve:ssm:/cadenza/dev/u}}"}], P)
    check_operations([{"_op": "noop"}, {"_op": "echo", "x": ["{{resolve:ssm:/cadenza/dev/u}}"]}], P)
    assert has_references({"k": ["{{resolve:ssm:/a}}"]}) and not has_references({"k": "{{x}}"})


def test_redact_leaves_empty_secrets_and_other_types_alone() -> None:
    assert redact({"n": 1, "s": "abc", "l": [None, "abc"]}, ["", "b"]) == {
        "n": 1,
        "s": "a***c",
        "l": [None, "a***c"],
    }
