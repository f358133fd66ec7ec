"""The writer's fast path for metadata: ``Masker.mask_plain`` + ``encode_metadata(plain=True)``
(the C encoder) must store exactly the bytes that ``Masker.mask`` + ``encode_metadata`` (the PHP
walk) store.

Issue 20 asks for property tests holding every fast path byte-identical to its slow path; the
strategies below aim at what the two encoders could disagree on: PHP's arrays (empty and
``"0"``-keyed dicts), whole and exponent floats, ``/`` and DEL escapes, non-ASCII text, key
forms, and values the masker must replace (the fast path must then not be taken).
"""

from __future__ import annotations

import copy
import dataclasses
import marshal
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from governance.hashing import Keyring
from governance.masking import Masker
from governance.masking_policy import load_masking_policy
from trace_service.php_json import encode_metadata

KEYRING = Keyring.from_json(
    '[{"id": "k1", "key": "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"}]', "k1")
MASKER = Masker(load_masking_policy(), KEYRING)

keys = st.one_of(
    st.sampled_from(["0", "1", "2", "10", "01", "a", "id", "path", "tags", "password", "email",
                     "totp_secret", "x/y", "zo\u00eb", "\x7f", ""]),
    st.text(max_size=8),
)
floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 12.0, 12.5, 1e-4, 9.99e-5, 1e16, 9.999999999999998e15, 1e22,
                     -3.25, 0.1, 1.5e300, 5e-324]),
)
scalars = st.one_of(
    st.none(), st.booleans(), floats,
    st.integers(), st.integers(min_value=-(10**12), max_value=10**12),
    st.text(), st.sampled_from(["a/b", "x\x7fy", "\\u007f", "caf\u00e9", "\U0001f600",
                                "ann@example.com", "4111 1111 1111 1111",
                                "ghp_" + "a1B2c3D4e5" * 4, "password_reset_requested"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(keys, inner, max_size=4),
        # a dict keyed "0", "1", ... as PHP holds a list
        st.lists(inner, min_size=1, max_size=3).map(lambda xs: {str(i): x for i, x in enumerate(xs)}),
    ),
    max_leaves=12,
)
metadata = st.one_of(st.dictionaries(keys, values, max_size=6), st.lists(values, max_size=3))


def _marshal_copy(value: Any) -> Any:
    # What the writer thread holds: a marshal round trip of the caller's snapshot.
    return marshal.loads(marshal.dumps(value))


@settings(max_examples=3000)
@given(metadata)
@example({"a": 12.0})
@example({"a": {"0": 1, "1": 2}})
@example({"a": {}})
@example({"a": [{}]})
@example({"a": 1e-05})
@example({"a": "x/\x7f"})
@example({"0": "packed at the top stays an object"})
def test_the_fast_path_stores_the_slow_paths_bytes(value: Any) -> None:
    fast_value, plain = MASKER.mask_plain(_marshal_copy(value))
    slow_value = MASKER.mask(_marshal_copy(value), owned=True)
    assert fast_value == slow_value  # what is stored is masked the same way
    slow = encode_metadata(slow_value)
    fast = encode_metadata(fast_value, plain=plain)
    assert fast == slow


@given(metadata)
def test_mask_plain_never_touches_the_callers_object_more_than_mask(value: Any) -> None:
    original = copy.deepcopy(value)
    MASKER.mask_plain(_marshal_copy(value))
    assert value == original or value != value  # NaN compares unequal to itself


# The bench's record and other everyday shapes take the fast path: if a change made them fall
# back to the walk, the writer would silently lose the speed-up (bench/writer.py).
EVERYDAY = [
    {"target_id": 3, "target_type": "admin", "reason": "password_reset_requested",
     "changes": {"status": ["active", "locked"], "attempts": 5},
     "client": {"platform": "web", "version": "4.12.1"}, "duration_ms": 12.5,
     "tags": ["auth", "stepup"]},
    {"order_id": 1234, "items": [{"sku": "A-1", "qty": 2}], "url": "/api/orders/1234"},
    {"message": "caf\u00e9 ferm\u00e9", "ok": True, "none": None},
]


def test_everyday_metadata_takes_the_fast_path() -> None:
    for value in EVERYDAY:
        masked, plain = MASKER.mask_plain(_marshal_copy(value))
        assert plain, value
        assert masked == value
        assert encode_metadata(masked, plain=True) == encode_metadata(value)


def test_what_json_writers_disagree_on_takes_the_slow_path() -> None:
    value: Any
    for value in ({"a": 12.0}, {"a": 1e-05}, {"a": 1e22}, {"a": {}}, {"a": {"0": "x"}},
                  {"a": [{}]}, [1, 2], {"secret": "ghp_" + "a1B2c3D4e5" * 4}):
        assert MASKER.mask_plain(_marshal_copy(value))[1] is False, value


def test_an_empty_dict_is_null_on_both_paths() -> None:
    assert encode_metadata({}, plain=True) is None and encode_metadata({}) is None


def test_nesting_php_refuses_is_never_plain_even_when_the_policy_allows_it() -> None:
    # Found by review: with a policy's max_depth above PHP's 512 levels, the clean check let a
    # 600-deep dict through as plain, and the C encoder (no depth limit) wrote what the PHP path
    # refuses (MetadataError: the row is dropped as invalid).
    deep_masker = Masker(dataclasses.replace(load_masking_policy(), max_depth=2000), None)
    value: Any = "x"
    for _ in range(600):
        value = {"k": value}
    for top in ({"a": value}, {"a": [value]}):
        assert deep_masker.mask_plain(_marshal_copy(top))[1] is False
    shallow: Any = "x"
    for _ in range(100):
        shallow = {"k": shallow}
    assert deep_masker.mask_plain(_marshal_copy({"a": shallow}))[1] is True
