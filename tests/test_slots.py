"""Keys to slots: xxh3_64 modulo 16384, with Redis Cluster's hash-tag rule."""

from shardis.slots import SLOT_COUNT, SlotMap, hash_tag, key_slot


def test_empty_key_matches_the_published_xxh3_vector():
    # XXH3_64bits("") with seed 0 is 0x2D06800538D394C2 in xxHash's own test vectors.
    assert 0x2D06800538D394C2 % SLOT_COUNT == key_slot(b"")


def test_known_slots():
    assert key_slot(b"foo") == 15754
    assert key_slot(b"bar") == 4962
    assert key_slot(b"user:1000") == 3231


def test_hash_tag_rule():
    assert hash_tag(b"{user1000}.following") == b"user1000"
    assert hash_tag(b"foo{bar}{zap}") == b"bar"
    assert hash_tag(b"foo{}{bar}") == b"foo{}{bar}"  # empty tag: whole key
    assert hash_tag(b"foo{{bar}}zap") == b"{bar"
    assert hash_tag(b"foo{bar") == b"foo{bar"  # no closing brace
    assert hash_tag(b"}foo{bar}") == b"bar"
    assert hash_tag(b"plain") == b"plain"


def test_tagged_keys_share_a_slot():
    assert key_slot(b"{user1000}.following") == key_slot(b"{user1000}.followers")
    assert key_slot(b"{user1000}.following") == key_slot(b"user1000")


def test_slot_map_is_even_and_contiguous():
    slots = SlotMap(3)
    counts = [slots.owners.count(w) for w in range(3)]
    assert max(counts) - min(counts) <= 1
    assert slots.owners == sorted(slots.owners)
    assert slots.worker_of(b"foo") == slots.owners[key_slot(b"foo")]


def test_slot_map_can_be_rewritten_without_touching_keys():
    owners = [0] * SLOT_COUNT
    owners[key_slot(b"foo")] = 1
    slots = SlotMap(2, owners)
    assert slots.worker_of(b"foo") == 1
    assert slots.worker_of(b"bar") == 0
