"""ENAS's policy and REINFORCE (controller.policy), the enas strategy's ENAS priors, and local search with its
neighbourhoods: what they must do whatever the score source."""
from functools import cached_property

import numpy as np
import pytest
import torch

from controller.config import PolicyConfig, ReinforceConfig, enas_preset
from controller.policy import Policy, Reinforce
from controller.space import ControllerInputError
from nao_ws.search.strategies import canonical_text
from nao_ws.search.strategies.enas import EnasStrategy, fixed_prior, initial_bias
from nao_ws.search.strategies.local import LocalSearch
from supernet.spaces import SPACES, get_space


class ToySpace:
    """4 positions, tokens 1..3 everywhere (0 = start)."""

    name, vocab_size, length = "toy", 4, 4

    @cached_property
    def transition_mask(self):
        mask = np.zeros((4, 4, 4), dtype=bool)
        mask[:, :, 1:] = True
        return mask


def test_reinforce_raises_the_rewarded_token_and_the_baseline_tracks_the_reward():
    """Reward: the fraction of positions holding token 2. REINFORCE raises token 2's probability at every
    position, and the baseline ends near the mean reward of the last samples."""
    space, rng = ToySpace(), np.random.default_rng(0)
    torch.manual_seed(0)
    policy = Policy(space, PolicyConfig(hidden_size=16, tanh_constant=0), np.zeros(4, bool))
    reinforce = Reinforce(policy, ReinforceConfig(lr=0.02, entropy_weight=0, baseline_decay=0.9))

    def position_probs(n=4000):
        return (policy.sample(n, np.random.default_rng(1)) == 2).mean(0)

    before = position_probs()
    rewards = []
    for _ in range(150):
        tokens = policy.sample(8, rng)
        r = (tokens == 2).mean(1)
        rewards += r.tolist()
        reinforce.step(tokens, r)
    after = position_probs()
    assert np.all(before < 0.45) and np.all(after > 0.8), (before, after)
    assert abs(reinforce.baseline - np.mean(rewards[-40:])) < 0.05
    assert reinforce.updates == 150


def test_policy_samples_are_valid_and_follow_its_probabilities():
    for name, space in SPACES.items():
        policy_cfg, _ = enas_preset(name)
        policy = Policy(space, policy_cfg, space.index_positions, fixed_prior(space), initial_bias(space))
        tokens = policy.sample(200, np.random.default_rng(0))
        for t in tokens:  # decode checks every token against the space
            space.decode(t)
        log_prob, entropy = policy(torch.as_tensor(tokens))
        assert torch.isfinite(log_prob).all() and (entropy > 0).all()
    space = get_space("nb201")  # the first decision's frequencies are its probabilities
    policy = Policy(space, PolicyConfig(tanh_constant=0, init_range=1.0), space.index_positions)
    first = policy.sample(4000, np.random.default_rng(1))[:, 0]
    with torch.no_grad():
        out, _ = policy.lstm(policy.embed(torch.zeros(1, 1, dtype=torch.long)))
        p = torch.softmax(policy.logits(out, torch.zeros(1, 1, dtype=torch.long), torch.tensor([0]))[0, 0], -1)
    freq = np.bincount(first, minlength=space.vocab_size) / len(first)
    assert np.abs(freq - p.numpy()).max() < 0.03, (freq, p)
    assert p[0] == 0 and freq[0] == 0  # the start token is never a choice


def test_policy_refuses_a_sequence_its_mask_forbids():
    space = get_space("cnn-ws")
    policy = Policy(space, PolicyConfig(), space.index_positions)
    tokens = torch.as_tensor(policy.sample(1, np.random.default_rng(0)))
    tokens[0, 0] = 7  # an op token where an input is chosen
    with pytest.raises(ControllerInputError, match="does not allow"):
        policy(tokens)


def test_enas_priors_are_enas_values():
    """cnn-ws: the normal cell starts favouring the separable convolutions (b_soft and b_soft_no_learn); the
    rnn prior penalises distant inputs by (k - j)^2 / 6; nb201 has neither."""
    space = get_space("cnn-ws")
    policy = Policy(space, PolicyConfig(), space.index_positions, fixed_prior(space), initial_bias(space))
    tokens = policy.sample(3000, np.random.default_rng(0))
    ops = tokens[:, 1:20:2] - space.op_offset  # the normal cell's op decisions
    freq = np.bincount(ops.ravel(), minlength=5) / ops.size
    assert freq[:2].min() > 0.25 > 0.15 > freq[2:].max(), freq
    rnn = get_space("rnn")
    prior = fixed_prior(rnn)
    assert prior[2 * 5 - 1, rnn.prev_offset + 4] == pytest.approx(-1 / 6)
    assert prior[2 * 5 - 1, rnn.prev_offset + 0] == pytest.approx(-25 / 6)
    assert fixed_prior(get_space("nb201")) is None and initial_bias(get_space("nb201")) is None


def test_enas_on_scores_learns_from_each_new_score_and_from_known_samples_for_free():
    space = get_space("nb201")
    policy_cfg, reinforce_cfg = enas_preset("nb201")
    strategy = EnasStrategy(space, policy_cfg, reinforce_cfg, torch.device("cpu"), online=False,
                            reward_scale=0.01, seed=0)
    rng = np.random.default_rng(0)
    history = [(space.sample(rng), 80.0) for _ in range(5)]
    known = {canonical_text(space, a) for a, _ in history}
    out = strategy.propose(history, 3, known, rng)
    assert len(out) == 3 and all(p.origin == "enas" for p in out)
    assert strategy.learnt == 5 and strategy.reinforce.updates >= 5
    assert {canonical_text(space, p.arch) for p in out} <= known and len(known) == 8
    before = strategy.reinforce.updates
    strategy.propose(history + [(p.arch, 70.0) for p in out], 1, known, rng)
    assert strategy.reinforce.updates >= before + 3 and strategy.learnt == 8
    state = strategy.state_dict()
    twin = EnasStrategy(space, policy_cfg, reinforce_cfg, torch.device("cpu"), online=False, reward_scale=0.01,
                        seed=1)
    twin.load_state_dict(state)
    a, b = (s.policy.sample(4, np.random.default_rng(5)) for s in (strategy, twin))
    assert (a == b).all() and twin.reinforce.baseline == strategy.reinforce.baseline


@pytest.mark.parametrize("name", list(SPACES))
def test_neighbours_are_the_canonical_classes_one_decision_away(name):
    space, rng = get_space(name), np.random.default_rng(3)
    arch = space.sample(rng)
    sizes, values = space.decision_sizes(), arch.to_list()
    assert len(sizes) == len(values) and all(0 <= v < s for v, s in zip(values, sizes))
    nbrs = space.neighbours(arch)
    keys = [canonical_text(space, a) for a in nbrs]
    assert len(set(keys)) == len(keys) and canonical_text(space, arch) not in keys
    for a in nbrs:
        assert sum(x != y for x, y in zip(a.to_list(), values)) == 1
    if name == "nb201":  # every cell one edge away, by brute force over the space
        want = {canonical_text(space, c) for c in space.all_cells()
                if sum(x != y for x, y in zip(c.ops, arch.ops)) == 1} - {canonical_text(space, arch)}
        assert set(keys) == want


def test_local_search_climbs_to_the_optimum_then_restarts():
    """On a score that counts 3x3 convolutions (one optimum, every other cell has a better neighbour), local
    search reaches the all-convolution cell, then restarts from a random one."""
    space, rng = get_space("nb201"), np.random.default_rng(0)
    score = lambda a: float(sum(op == 3 for op in a.ops))
    history = [(a, score(a)) for a in (space.sample(rng) for _ in range(3))]
    known = {canonical_text(space, a) for a, _ in history}
    strategy = LocalSearch(space)
    for _ in range(200):
        out = strategy.propose(history, 1, known, rng)
        history += [(p.arch, score(p.arch)) for p in out]
        if strategy.restarts:
            break
    assert max(s for _, s in history) == 6 and strategy.restarts == 1 and strategy.moves >= 1
    assert history[-1][0] == parse(strategy.centre) and out[0].info == {"restart": True}
    state = strategy.state_dict()
    twin = LocalSearch(space)
    twin.load_state_dict(state)
    assert twin.state_dict() == state


def parse(text):
    from supernet.spaces import parse_arch

    return parse_arch(text, "nb201")


@pytest.mark.parametrize("space,task", [("nb201", "cifar10"), ("rnn", "ptb")])
def test_policy_presets_fill_the_enas_options(space, task):
    """--strategy enas on a supernet samples from its policy whatever the preset; --policy-preset picks ENAS's
    values for the space or NATS-Bench's retuned ones, and a flag still wins over either."""
    from controller.config import NATS_POLICY, NATS_REINFORCE
    from nao_ws.config.options import resolve
    from nao_ws.search import options

    def config(preset=None, **flags):
        cls, presets, base = options.config_for(task, space, None, "enas", preset)
        return resolve(cls, presets, "smoke", None, {"task": task, "strategy": "enas", **flags}, base=base)

    policy, reinforce = enas_preset(space)
    enas = config()
    assert enas.sampling == "policy" and enas.policy_hidden == policy.hidden_size and enas.policy_lr == reinforce.lr
    assert enas.tanh_constant == policy.tanh_constant and enas.policy_beta1 == 0.0
    nats = config("nats", policy_preset="nats", policy_lr=0.01)
    assert nats.policy_layers == NATS_POLICY["layers"] and nats.temperature == NATS_POLICY["temperature"]
    assert nats.policy_grad_clip == NATS_REINFORCE["grad_clip"] and nats.policy_lr == 0.01
