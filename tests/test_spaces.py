"""Property tests of the three search spaces over >= 1000 random architectures each (reference §1, §7)."""
import itertools
import json

import numpy as np
import pytest

from supernet.spaces import (CNN_OP_TYPE_SIZE, CnnSpace, SpaceError, get_space, parse_arch, SPACES)

N = 1000
NAONET_A = "0 2 1 10 2 3 1 2 0 1 1 2 0 3 4 2 1 0 0 2 | 0 2 1 8 0 1 0 9 0 4 1 5 0 9 2 1 1 6 0 2"
NAONET_B = "0 1 0 2 0 1 2 2 1 3 0 2 4 0 1 3 2 1 0 3 | 1 1 1 0 2 1 2 4 1 0 2 3 3 1 2 2 0 2 0 2"
RNN_REF = "0 1 1 1 2 2 1 2 4 1 4 1 4 1 7 1 8 2 1 0 4 1"


def samples(name, n=N, seed=0):
    sp = get_space(name)
    rng = np.random.default_rng(seed)
    return sp, [sp.sample(rng) for _ in range(n)]


@pytest.mark.parametrize("name", list(SPACES))
def test_round_trips_and_validity(name):
    sp, archs = samples(name)
    for a in archs:
        sp.validate(a)
        assert parse_arch(sp.format(a), name) == a
        assert sp.from_json(json.loads(json.dumps(sp.to_json(a)))) == a
        assert sp.decode(sp.encode(a)) == a
        assert len(sp.encode(a)) == sp.length
    expected = sp.size() * (1 - (1 - 1 / sp.size()) ** N)  # distinct draws of uniform sampling (nb201: ~969)
    assert len(set(archs)) > 0.99 * expected  # hashable, and sampling is not degenerate


@pytest.mark.parametrize("name", list(SPACES))
def test_canonical_is_invariant_and_idempotent(name):
    sp, archs = samples(name, seed=1)
    rng = np.random.default_rng(2)
    for a in archs:
        c = sp.canonical(a)
        sp.validate(c)
        assert sp.canonical(c) == c
        assert sp.canonical(sp.swap_branches(a, rng) if hasattr(sp, "swap_branches") else a) == c
        assert sp.canonical_tokens(sp.augment_tokens(sp.encode(a), rng)) == sp.canonical_tokens(sp.encode(a))


def _renumber_cell(cell, order):
    """Apply a node permutation (a topological order) to a cell, keeping branch order."""
    pos = {old: new for new, old in enumerate(order)}
    remap = lambda i: i if i < 2 else pos[i - 2] + 2  # noqa: E731
    return tuple((remap(cell[o][0]), cell[o][1], remap(cell[o][2]), cell[o][3]) for o in order)


def test_cnn_canonical_merges_node_renumberings():
    sp, archs = samples("cnn-ws", n=200, seed=3)
    hits = 0
    for a in archs:
        deps = [{i - 2 for i in (n[0], n[2]) if i >= 2} for n in a.normal]
        for order in itertools.permutations(range(5)):
            pos = {o: k for k, o in enumerate(order)}
            if all(pos[d] < pos[j] for j in range(5) for d in deps[j]) and order != tuple(range(5)):
                b = sp.make(_renumber_cell(a.normal, order), a.reduce)
                assert sp.canonical(b) == sp.canonical(a)
                hits += 1
                break
    assert hits > 50  # many random cells admit another topological order


def test_canonical_separates_different_networks():
    sp = get_space("cnn-ws")
    a = parse_arch(NAONET_B)
    cell = list(a.normal)
    cell[4] = (cell[4][0], (cell[4][1] + 1) % 5, cell[4][2], cell[4][3])
    assert sp.canonical(sp.make(cell, a.reduce)) != sp.canonical(a)


def test_rnn_canonical_merges_sibling_orders():
    sp = get_space("rnn")
    # nodes 2 and 3 both read node 1; swapping them (and node 4's parent) is the same tree
    a = sp.from_list([0, 0, 1, 1, 2, 1, 3, 2, 0] + [0, 0] * 7)
    b = sp.from_list([0, 0, 1, 1, 3, 1, 2, 3, 0] + [0, 0] * 7)
    assert a != b and sp.canonical(a) == sp.canonical(b)
    c = sp.from_list([0, 0, 1, 1, 2, 1, 3, 3, 0] + [0, 0] * 7)  # node 4 under the relu node: different
    assert sp.canonical(c) != sp.canonical(a)


@pytest.mark.parametrize("name", list(SPACES))
def test_masks_admit_exactly_the_valid_tokens(name):
    """At each position and for each possible previous token, the mask equals the set of tokens that
    extend some valid architecture (probed by substituting every token into real encodings)."""
    sp, archs = samples(name, n=300, seed=4)
    mask = sp.transition_mask
    assert mask.shape == (sp.length, sp.vocab_size, sp.vocab_size)
    assert not mask[:, :, 0].any()  # the start token never appears in a sequence
    for a in archs[:12]:
        toks = sp.encode(a)
        for pos in range(sp.length):
            prev = toks[pos - 1] if pos else 0
            for t in range(sp.vocab_size):
                trial = list(toks)
                trial[pos] = t
                ok = True
                try:
                    sp.decode(trial)
                except SpaceError:
                    ok = False
                # a token can be masked in yet break the *next* position's dependency (cnn op size)
                if name == "cnn" and pos % 3 == 1 and mask[pos, prev, t]:
                    continue
                assert ok == bool(mask[pos, prev, t]), (pos, prev, t)


def test_cnn_type_size_mask_is_exact():
    sp = CnnSpace()
    m = sp.transition_mask
    allowed = {(t + sp.type_offset, s + sp.size_offset) for t, s in CNN_OP_TYPE_SIZE}
    for pos in range(2, sp.length, 3):
        got = {(p, t) for p in range(sp.vocab_size) for t in range(sp.vocab_size) if m[pos, p, t]}
        assert got == allowed


@pytest.mark.parametrize("name", list(SPACES))
def test_sampling_is_reproducible_and_covers_choices(name):
    _, a1 = samples(name, n=200, seed=7)
    _, a2 = samples(name, n=200, seed=7)
    _, a3 = samples(name, n=200, seed=8)
    assert a1 == a2 and a1 != a3
    sp = get_space(name)
    toks = np.array([sp.encode(a) for a in a1])
    for pos in range(sp.length):  # every valid token appears somewhere at each position (uniform sampling)
        valid = set(np.flatnonzero(sp.transition_mask[pos].any(0)))
        assert set(toks[:, pos]) <= valid
        if len(valid) <= 6:
            assert set(toks[:, pos]) == valid


def test_reference_architectures_parse():
    a = parse_arch(NAONET_A, "cnn")
    assert a.space == "cnn" and a.normal[0] == (0, 2, 1, 10)
    b = parse_arch(NAONET_B)
    assert b.space == "cnn-ws"
    r22, r23 = parse_arch(RNN_REF), parse_arch("0 " + RNN_REF)
    assert r22 == r23 and r22.act0 == 0
    assert get_space("rnn").loose_ends(r22) == [3, 5, 6, 9, 10, 11]


def test_space_sizes():
    assert get_space("cnn-ws").size() == pytest.approx((5.1e12) ** 2, rel=0.02)  # reference §1.1


def test_json_file_path(tmp_path):
    sp = get_space("cnn")
    a = parse_arch(NAONET_A, "cnn")
    p = tmp_path / "best.json"
    p.write_text(json.dumps(sp.to_json(a)))
    assert parse_arch(str(p)) == a
    with pytest.raises(SpaceError, match="'cnn' but 'cnn-ws'"):
        parse_arch(str(p), "cnn-ws")


@pytest.mark.parametrize("name", ["cnn-ws", "cnn"])
def test_token_augmentation_is_the_branch_swap(name):
    sp, archs = samples(name, n=300, seed=11)
    for k, a in enumerate(archs):
        r1, r2 = np.random.default_rng(k), np.random.default_rng(k)
        assert sp.augment_tokens(sp.encode(a), r1) == sp.encode(sp.swap_branches(a, r2))


@pytest.mark.parametrize("name", ["cnn-ws", "cnn", "rnn", "nb201"])
def test_mutation_changes_one_decision_into_another_network(name):
    """Regularised evolution's mutation in every space: one value of the text form changed to another valid
    one, never into an encoding of the same network, and every decision with a choice is reachable."""
    sp, archs = samples(name, n=300, seed=5)
    rng = np.random.default_rng(5)
    changed = set()
    for a in archs:
        child = sp.mutate(a, rng)
        sp.validate(child)
        diff = [k for k, (x, y) in enumerate(zip(a.to_list(), child.to_list())) if x != y]
        assert len(diff) == 1 and sp.canonical(child) != sp.canonical(a)
        changed.update(diff)
    choices = len(a.to_list()) - (1 if name == "rnn" else 0)  # rnn: node 1 can only read node 0
    assert len(changed) == choices


def test_mutation_draws_again_while_the_network_stays_the_same():
    """nb201: a cell whose change of an edge that cannot reach the output is drawn again, with the same draws
    regularised evolution made before it checked for a known cell itself."""
    sp = get_space("nb201")
    dead = sp.parse("|none~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|")  # node 1 is dead
    rng, replay = np.random.default_rng(0), np.random.default_rng(0)
    child = sp.mutate(dead, rng)
    while True:
        again = sp.change_one(dead, replay)
        if sp.canonical(again) != sp.canonical(dead):
            break
    assert child == again and rng.bit_generator.state == replay.bit_generator.state
