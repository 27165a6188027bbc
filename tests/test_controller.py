"""The NAO controller (issue 5): masks, augmentation, training, generation, metrics, bad input."""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from controller.config import GenerateConfig, ModelConfig, TrainConfig, preset
from controller.generate import generate, predict
from controller.metrics import kendall_tau, mean_hamming, pairwise_accuracy, precision_at_k, spearman_rho
from controller.model import NAO
from controller.space import ControllerInputError
from controller.train import evaluate, export_state, fit, load_state, make_optimizer
from supernet.spaces import SPACES

SPACE_NAMES = ("cnn-ws", "cnn", "rnn", "nb201")
SMALL = ModelConfig(embed_size=8, hidden_size=16, mlp_layers=1, mlp_hidden=16)  # fast; behaviour, not quality


def sample_seqs(space, n: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [space.encode(space.sample(rng)) for _ in range(n)]


def small_model(space, seed: int = 0) -> NAO:
    torch.manual_seed(seed)
    return NAO(dataclasses.replace(SMALL, group=preset(space.name)[0].group), space.transition_mask)


def invalid_positions(seqs: np.ndarray, space) -> np.ndarray:
    """Positions holding a token the space's first-order mask forbids after its predecessor."""
    mask = space.transition_mask
    prev = np.pad(seqs[:, :-1], ((0, 0), (1, 0)))
    return ~mask[np.arange(space.length), prev, seqs]


# -- model ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", SPACE_NAMES[:3])  # nb201's mask forbids only the start token: nothing to test
def test_masked_decoding_is_valid_for_10000_random_embeddings(name):
    space = SPACES[name]
    model = small_model(space).eval()
    for p in model.decoder.parameters():  # large random weights: varied paths, and the mask must do the work
        torch.nn.init.normal_(p, std=1.0)
    steps = -(-space.length // model.cfg.group)
    h = F.normalize(torch.randn(10_000, steps, SMALL.hidden_size, generator=torch.Generator().manual_seed(1)), dim=-1)
    with torch.no_grad():
        seqs = model.decode(h).numpy()
        model.mask = torch.ones_like(model.mask)  # the same decoder without masks goes astray
        unmasked = model.decode(h).numpy()
    assert seqs.shape == (10_000, space.length)
    assert not invalid_positions(seqs, space).any()
    assert invalid_positions(unmasked, space).any(axis=1).mean() > 0.5
    assert len({tuple(s) for s in seqs.tolist()}) > 1000  # many decoding paths covered
    for s in seqs[:20]:
        space.decode(s.tolist())  # the space's own check agrees


@pytest.mark.parametrize("name, steps", [("cnn-ws", 20), ("cnn", 60), ("rnn", 12)])
def test_encoder_steps_group_tokens_and_left_pad(name, steps):
    space = SPACES[name]
    model = NAO(preset(name)[0], space.transition_mask)
    tokens = torch.tensor(sample_seqs(space, 3))
    h = model.encoder(tokens)
    assert h.shape == (3, steps, 96)
    assert torch.allclose(h.norm(dim=-1), torch.ones(3, steps))
    if name == "rnn":  # 23 tokens: the first step is (start token 0, node 0's activation)
        emb = model.encoder.embedding
        first = torch.cat([emb(torch.tensor([0])), emb(tokens[:1, 0])], dim=-1)
        out, _ = model.encoder.lstm(first[None])
        assert torch.allclose(F.normalize(out[0, 0], dim=-1), h[0, 0], atol=1e-6)


@pytest.mark.parametrize("name, align_bias", [("cnn-ws", True), ("cnn", True), ("rnn", True), ("cnn-ws", False)])
def test_training_log_probs_are_masked_and_normalised(name, align_bias):
    space = SPACES[name]
    model = NAO(dataclasses.replace(SMALL, group=preset(name)[0].group, align_bias=align_bias), space.transition_mask)
    assert ("decoder.align" in dict(model.named_parameters())) == align_bias
    tokens = torch.tensor(sample_seqs(space, 8))
    _, log_probs = model(tokens)
    prev = F.pad(tokens[:, :-1], (1, 0))
    allowed = torch.tensor(space.transition_mask)[torch.arange(space.length), prev]
    assert torch.all(log_probs[~allowed] == float("-inf"))
    assert torch.isfinite(log_probs[allowed]).all()
    assert torch.allclose(log_probs.logsumexp(dim=-1), torch.zeros(8, space.length), atol=1e-5)


# -- training -------------------------------------------------------------------------------------------

class SpySpace:
    """A space whose ``augment_tokens`` records every call (input, output)."""

    def __init__(self, space):
        self.space, self.calls = space, []
        self.name, self.vocab_size, self.length = space.name, space.vocab_size, space.length
        self.transition_mask, self.canonical_tokens = space.transition_mask, space.canonical_tokens

    def augment_tokens(self, tokens, rng):
        out = self.space.augment_tokens(tokens, rng)
        self.calls.append((tuple(tokens), tuple(out)))
        return out


@pytest.mark.parametrize("name", ["cnn-ws", "cnn"])
def test_augmentation_draws_a_fresh_swap_per_example_and_keeps_the_canonical_form(name):
    space = SpySpace(SPACES[name])
    seqs = sample_seqs(space.space, 30)
    cfg = TrainConfig(epochs=3, holdout=0.2, batch_size=10)
    fit(small_model(space.space), seqs, np.arange(30.0), space, cfg, seed=0)
    assert len(space.calls) == 3 * 24  # every training example, every epoch; none of the 6 held out
    assert {c[0] for c in space.calls} <= {tuple(s) for s in seqs}
    assert sum(src != out for src, out in space.calls) > len(space.calls) // 2
    for src, out in space.calls:
        assert space.canonical_tokens(out) == space.canonical_tokens(src)
    fit(small_model(space.space), seqs, np.arange(30.0), space, dataclasses.replace(cfg, augment=False), seed=0)
    assert len(space.calls) == 3 * 24


@pytest.mark.parametrize("name", ["cnn-ws", "rnn"])
def test_model_learns_20_architectures_exactly(name):
    """Exact reconstruction and near-zero MSE within 200 epochs (no augmentation: pure memorisation)."""
    space = SPACES[name]
    seqs = sample_seqs(space, 20, seed=3)
    scores = np.random.default_rng(3).random(20)
    torch.manual_seed(0)
    model = NAO(preset(name)[0], space.transition_mask)
    cfg = TrainConfig(epochs=10, holdout=0.0, augment=False, lr=5e-3)
    optimizer = make_optimizer(model, cfg)
    for chunk in range(20):
        fit(model, seqs, scores, space, cfg, seed=chunk, optimizer=optimizer)
        hamming = evaluate(model, seqs, scores, space)["hamming"]
        mse = float(np.mean((predict(model, seqs, space) - scores) ** 2))  # scores span [min, max] ~ [0, 1]
        if hamming == 0 and mse < 5e-3:
            break
    assert hamming == 0 and mse < 5e-3, (chunk, hamming, mse)


def test_fit_is_deterministic_resumable_and_leaves_global_rng_alone(tmp_path):
    space = SPACES["cnn-ws"]
    seqs, scores = sample_seqs(space, 40), np.linspace(0, 1, 40)
    cfg = TrainConfig(epochs=2, batch_size=16)
    model = small_model(space)
    optimizer = make_optimizer(model, cfg)
    fit(model, seqs, scores, space, cfg, seed=0, optimizer=optimizer)  # iteration 1: Adam state exists now
    torch.save(export_state(model, optimizer), tmp_path / "ctl.pt")

    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = fit(model, seqs, scores, space, cfg, seed=1, optimizer=optimizer)  # iteration 2, uninterrupted
    assert torch.equal(torch.rand(3), before)

    resumed = small_model(space, seed=99)
    opt2 = make_optimizer(resumed, cfg)
    load_state(resumed, opt2, torch.load(tmp_path / "ctl.pt", weights_only=True))
    b = fit(resumed, seqs, scores, space, cfg, seed=1, optimizer=opt2)  # iteration 2 after a "crash"
    for (k, p), q in zip(model.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), k
    assert {k: v for k, v in a.items() if k != "seconds_per_epoch"} == \
           {k: v for k, v in b.items() if k != "seconds_per_epoch"}

    other = copy.deepcopy(resumed)
    fit(other, seqs, scores, space, cfg, seed=2, optimizer=make_optimizer(other, cfg))
    assert not torch.equal(other.decoder.out.weight, resumed.decoder.out.weight)


def test_fit_reports_held_out_metrics_and_progress():
    space = SPACES["rnn"]
    seqs = sample_seqs(space, 50)
    seen = []
    out = fit(small_model(space), seqs, np.arange(50.0), space, TrainConfig(epochs=3, holdout=0.2), seed=0,
              progress=lambda epoch, logs: seen.append((epoch, sorted(logs))))
    assert seen == [(e, ["loss", "mse", "nll"]) for e in range(3)]
    assert (out["n_train"], out["n_holdout"], out["epochs"]) == (40, 10, 3)
    assert 0 <= out["pairwise_accuracy"] <= 1 and 0 <= out["precision_at_k"] <= 1 and out["train_loss"] > 0
    assert -1 <= out["kendall_tau"] <= 1 and 0 <= out["hamming"] <= space.length
    assert np.isnan(fit(small_model(space), seqs, np.arange(50.0), space, TrainConfig(epochs=1, holdout=0.0),
                        seed=0)["kendall_tau"])


# -- generation --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", SPACE_NAMES)
def test_generation_returns_new_valid_unique_architectures(name):
    space = SPACES[name]
    seqs = sample_seqs(space, 60)
    scores = np.random.default_rng(0).random(60)
    model = small_model(space)
    fit(model, seqs, scores, space, TrainConfig(epochs=2, holdout=0.0), seed=0)
    calls = []
    decode = model.decode
    model.decode = lambda h: calls.append(h.shape[0]) or decode(h)
    cfg = GenerateConfig(num_seeds=20, num_new=30, step_size=1.0, step_growth=2.0, max_step_size=30.0)
    known = {space.canonical_tokens(s) for s in sample_seqs(space, 20, seed=1)}
    new = generate(model, seqs, scores, space, cfg, known=known)

    assert 0 < len(new) <= 30
    assert calls and set(calls) == {20} and len(calls) <= 15  # one batched decode of all seeds per eta
    canon = [space.canonical_tokens(c.tokens) for c in new]
    assert len(set(canon)) == len(new)
    assert not set(canon) & ({space.canonical_tokens(s) for s in seqs} | known)
    top = set(np.argsort(-scores)[:20].tolist())
    for c in new:
        space.decode(list(c.tokens))  # valid
        assert c.seed in top and 0 <= c.predicted <= 1 and 1 <= c.step_size <= 30
    assert [c.step_size for c in new] == sorted(c.step_size for c in new)
    again = generate(model, seqs, scores, space, cfg, known=known | set(canon))
    assert not {space.canonical_tokens(c.tokens) for c in again} & set(canon)


def test_generation_stops_at_the_quota_and_reports_predictions():
    space = SPACES["cnn-ws"]
    seqs = sample_seqs(space, 30)
    model = small_model(space)
    for p in model.parameters():  # large random weights: different seeds decode differently
        torch.nn.init.normal_(p, std=1.0)
    new = generate(model, seqs, np.arange(30.0), space, GenerateConfig(num_seeds=10, num_new=3))
    assert len(new) == 3
    assert np.allclose([c.predicted for c in new], predict(model, [c.tokens for c in new], space), atol=1e-6)


# -- metrics (hand-computed) ---------------------------------------------------------------------------------

def test_pairwise_accuracy_by_hand():
    assert pairwise_accuracy([1, 2, 3], [10, 20, 30]) == 1.0
    assert pairwise_accuracy([3, 2, 1], [10, 20, 30]) == 0.0
    assert pairwise_accuracy([1, 3, 2], [10, 20, 30]) == pytest.approx(2 / 3)
    assert pairwise_accuracy([1, 1, 2], [1, 2, 3]) == pytest.approx(2.5 / 3)  # a tie in pred counts 1/2
    assert pairwise_accuracy([2, 1, 3], [1, 1, 2]) == 1.0  # the pair tied in true is left out
    assert np.isnan(pairwise_accuracy([1, 2], [5, 5]))


def test_kendall_tau_b_by_hand():
    assert kendall_tau([3, 1, 2], [1, 2, 3]) == pytest.approx(-1 / 3)
    assert kendall_tau([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(5 / np.sqrt(5 * 6))  # tau-b with a tie
    assert np.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))


def test_spearman_rho_by_hand():
    assert spearman_rho([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    assert spearman_rho([1, 2, 2], [1, 2, 3]) == pytest.approx(1.5 / np.sqrt(1.5 * 2))  # average ranks
    assert spearman_rho([5, 4, 3, 2, 1], [1, 2, 3, 4, 5]) == pytest.approx(-1.0)


@pytest.mark.parametrize("seed", range(20))
def test_pair_metrics_equal_their_definition_over_all_pairs(seed):
    """Pairwise accuracy and tau-b are computed from scipy's O(n log n) tau; with many ties they still equal
    the counts over every pair."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 40))
    pred, true = rng.integers(0, rng.integers(1, 6), n).astype(float), rng.integers(0, 4, n).astype(float)
    i, j = np.triu_indices(n, k=1)
    sp, st = np.sign(pred[i] - pred[j]), np.sign(true[i] - true[j])
    untied = st != 0
    acc = np.mean((1 + sp[untied] * st[untied]) / 2) if untied.any() else np.nan
    denom = np.sqrt(np.count_nonzero(sp) * np.count_nonzero(st))
    tau = np.sum(sp * st) / denom if denom else np.nan
    assert pairwise_accuracy(pred, true) == pytest.approx(acc, nan_ok=True)
    assert kendall_tau(pred, true) == pytest.approx(tau, nan_ok=True)


def test_precision_at_k_and_hamming_by_hand():
    assert precision_at_k([4, 3, 2, 1], [4, 1, 3, 2], k=2) == 0.5
    assert precision_at_k([0.9, 0.8, 0.1, 0.2], [1, 0, 3, 2], k=2) == 0.0
    assert precision_at_k([1, 1, 1, 0], [0, 1, 2, 3], k=1) == 0.0  # a tie goes to the lower index
    assert precision_at_k([1, 1, 1, 0], [3, 1, 2, 0], k=1) == 1.0
    assert mean_hamming([[1, 2, 3], [1, 2, 3]], [[1, 2, 4], [3, 2, 1]]) == 1.5
    with pytest.raises(ControllerInputError):
        precision_at_k([1, 2], [1, 2], k=3)


# -- bad input ------------------------------------------------------------------------------------------

def _bad_inputs():
    space = SPACES["cnn-ws"]
    good = sample_seqs(space, 12)
    wrong_pos = [list(s) for s in good]
    wrong_pos[4][0] = 5  # node 0 may only read inputs 0, 1 (tokens 1, 2)
    op_for_index = [list(s) for s in good]
    op_for_index[2][6] = 9  # position 6 is an index position
    out_of_vocab = [list(s) for s in good]
    out_of_vocab[1][3] = 12
    return space, good, [
        (good[:3] + [good[3][:-1]] + good[4:], np.arange(12.0), "sequence 3 has 39 tokens"),
        (wrong_pos, np.arange(12.0), "sequence 4: token 5 is not valid at position 0"),
        (op_for_index, np.arange(12.0), "sequence 2: token 9 is not valid at position 6"),
        (out_of_vocab, np.arange(12.0), "sequence 1: token 12 is not valid at position 3"),
        (good, np.r_[np.arange(11.0), np.nan], "score 11 is nan"),
        (good, np.arange(11.0), "got 11 scores for 12 architectures"),
    ]


@pytest.mark.parametrize("case", range(6))
def test_bad_input_raises_one_line_controller_input_error(case):
    space, _, cases = _bad_inputs()
    seqs, scores, message = cases[case]
    model = small_model(space)
    calls = [lambda: fit(model, seqs, scores, space, TrainConfig(epochs=1), seed=0),
             lambda: generate(model, seqs, scores, space, GenerateConfig(num_seeds=2, num_new=2)),
             lambda: evaluate(model, seqs, scores, space)]
    for call in calls:
        with pytest.raises(ControllerInputError, match=message) as err:
            call()
        assert "\n" not in str(err.value)


def test_more_seeds_than_architectures_and_wrong_space_are_rejected():
    space, good, _ = _bad_inputs()
    model = small_model(space)
    with pytest.raises(ControllerInputError, match="100 seeds requested but only 12 architectures"):
        generate(model, good, np.arange(12.0), space, GenerateConfig())
    with pytest.raises(ControllerInputError, match="space rnn"):
        predict(model, sample_seqs(SPACES["rnn"], 2), SPACES["rnn"])
    with pytest.raises(ControllerInputError, match="step_growth"):
        GenerateConfig(step_growth=0.0)



# -- issue 13: target scaling, ranking loss, unlabeled sequences, the driver --------------------------------

def test_rank_targets_are_quantiles_with_shared_ties():
    from controller.train import normalise

    y = np.array([10.0, 80.0, 80.0, 90.0, 85.0])
    r = normalise(y, "rank")
    assert r.min() == 0 and r.max() == 1 and r[1] == r[2]
    assert list(np.argsort(r, kind="stable")) == list(np.argsort(y, kind="stable"))
    assert np.allclose(normalise(y), (y - 10) / 80)  # minmax stays the default (reference §2.1)


def test_ranking_loss_penalises_only_misordered_or_close_pairs():
    from controller.train import ranking_loss

    target = torch.tensor([0.0, 0.5, 1.0])
    assert ranking_loss(torch.tensor([0.0, 0.5, 1.0]), target, 0.05).item() == 0
    wrong = torch.tensor([1.0, 0.5, 0.0], requires_grad=True)
    loss = ranking_loss(wrong, target, 0.05)
    loss.backward()
    assert loss.item() > 0.5 and wrong.grad[0] > 0 > wrong.grad[2]  # descent reorders them
    assert ranking_loss(torch.tensor([0.3, 0.3]), torch.tensor([0.7, 0.7]), 0.05).item() == 0  # ties: no pair


def test_unlabeled_sequences_train_the_decoder_only_and_are_checked():
    from supernet.spaces import get_space

    space = get_space("nb201")
    rng = np.random.default_rng(0)
    seqs = [space.encode(space.sample(rng)) for _ in range(20)]
    extra = [space.encode(space.sample(rng)) for _ in range(30)]
    cfg = TrainConfig(epochs=2, holdout=0.0, targets="rank", rank_loss=1.0)
    model = NAO(ModelConfig(group=1, embed_size=8, hidden_size=16, mlp_hidden=16), space.transition_mask)
    out = fit(model, seqs, np.arange(20.0), space, cfg, seed=0, unlabeled=extra)
    assert out["n_train"] == 20 and np.isfinite(out["train_loss"])
    with pytest.raises(ControllerInputError, match="not valid"):
        fit(model, seqs, np.arange(20.0), space, cfg, seed=0, unlabeled=[[0] * 6])


def test_driver_ensemble_state_round_trip_and_known_set():
    from nao_ws.search.strategies import canonical_text
    from nao_ws.search.strategies.nao import ControllerDriver
    from supernet.spaces import get_space

    space = get_space("nb201")
    rng = np.random.default_rng(1)
    archs = [space.sample(rng) for _ in range(30)]
    scores = rng.random(30)

    def driver():
        return ControllerDriver.for_space(space, torch.device("cpu"), train={"epochs": 3, "holdout": 0.0},
                                          model={"hidden_size": 16, "mlp_hidden": 16}, members=2,
                                          canonical_inputs=True, init_seed=0)

    d = driver()
    d.fit(archs, scores, seed=0)
    member = [predict(m, d.tokens(archs), space) for m in d.models]
    assert np.allclose(d.predict(archs), np.mean(member, axis=0)) and not np.allclose(*member)
    e = driver()
    e.load_state_dict(d.state_dict())
    assert np.allclose(e.predict(archs), d.predict(archs))
    known = {canonical_text(space, a) for a in archs}
    before = set(known)
    cands = d.generate(archs, scores, known, num_new=10, num_seeds=5, by_prediction=True)
    texts = [canonical_text(space, c.arch) for c in cands]
    assert len(set(texts)) == len(texts) and not set(texts) & before and known == before | set(texts)
    assert [c.predicted for c in cands] == sorted((c.predicted for c in cands), reverse=True)
