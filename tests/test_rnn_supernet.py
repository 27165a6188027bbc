"""RNN supernet and cell (reference §1.3, §3.2): the math, weight sharing, dropout masks, scoring, training step."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nao_ws.config.recipes import RnnSupernet
from supernet import rnn
from supernet.spaces import get_space, parse_arch
from supernet.variants import CELL_OUTPUTS

SPACE = get_space("rnn")
REF_22 = "0 1 1 1 2 2 1 2 4 1 4 1 4 1 7 1 8 2 1 0 4 1"  # reference §5.2
NO_DROPOUT = dict.fromkeys(rnn.DROPOUTS, 0.0)


def lm(vocab, size, arch=None, **dropouts):
    """The supernet (arch None) or the model of ``arch`` at embedding = hidden size ``size``."""
    return rnn.build_lm(vocab, RnnSupernet(emb_size=size, **dropouts), arch)


def archs(n, seed=0):
    rng = np.random.default_rng(seed)
    return [SPACE.sample(rng) for _ in range(n)]


def reference_cell(cell, x, h, arch, output="loose"):
    """reference §1.3 transcribed literally, one node and one time step at a time; the output is the mean of the
    loose ends or (``all``) of nodes 1..11."""
    outputs = []
    for t in range(x.size(0)):
        c0, h0 = (torch.cat([x[t], h], 1) @ cell.w0).chunk(2, 1)
        s = [h + torch.sigmoid(c0) * (rnn.ACTIVATIONS[arch.act0](h0) - h)]
        for k, (prev, act) in enumerate(arch.nodes, start=1):
            c, hh = (s[prev] @ cell.node_weight(k, prev, act)).chunk(2, 1)
            s.append(s[prev] + torch.sigmoid(c) * (rnn.ACTIVATIONS[act](hh) - s[prev]))
        mean = SPACE.loose_ends(arch) if output == "loose" else range(1, 12)
        h = sum(s[k] for k in mean) / len(mean)
        outputs.append(h)
    return torch.stack(outputs)


def test_cell_matches_the_spec_formulas():
    torch.manual_seed(0)
    cell = rnn.SharedCell(6, 6)
    x, h = torch.randn(4, 3, 6), torch.randn(3, 6)
    for arch in archs(8):
        torch.testing.assert_close(cell(x, h, arch), reference_cell(cell, x, h, arch), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("step", ["tensor", "per-node"])
def test_cell_output_all_is_the_mean_of_nodes_1_to_11(step):
    torch.manual_seed(0)
    cell = rnn.SharedCell(6, 6)
    cell.step = step
    x, h = torch.randn(4, 3, 6), torch.randn(3, 6)
    for arch in archs(8):
        out = {}
        for output in CELL_OUTPUTS:
            cell.output = output
            out[output] = cell(x, h, arch)
            torch.testing.assert_close(out[output], reference_cell(cell, x, h, arch, output), rtol=1e-5, atol=1e-6)
        assert (out["all"] - out["loose"]).abs().max() > 1e-3


def test_recipes_choose_the_cell_output():
    """Search: the mean of the loose ends (ENAS); final training: ref-TF's final cell, nodes 1..11."""
    from nao_ws.search.options import RnnWsSearch
    from nao_ws.train.options import RnnTrainConfig

    arch = parse_arch(REF_22, "rnn")
    assert rnn.build_lm(20, RnnWsSearch(task="ptb", emb_size=8)).cell.output == "loose"
    assert rnn.build_lm(20, RnnTrainConfig(task="ptb", emb_size=8), arch).cell.output == "all"
    with pytest.raises(ValueError, match="cell_output"):
        rnn.build_lm(20, RnnSupernet(emb_size=8, cell_output="last"))


def test_fixed_cell_with_inherited_weights_equals_supernet():
    torch.manual_seed(0)
    arch = archs(1, seed=3)[0]
    shared = lm(20, 8, **NO_DROPOUT)
    fixed = lm(20, 8, arch, **NO_DROPOUT)
    with torch.no_grad():
        fixed.embedding.weight.copy_(shared.embedding.weight)
        fixed.cell.w0.copy_(shared.cell.w0)
        for k, (prev, act) in enumerate(arch.nodes, start=1):
            fixed.cell.node_weights[k - 1].copy_(shared.cell.node_weight(k, prev, act))
    tokens = torch.randint(0, 20, (5, 2))
    a, _, _ = shared(tokens, shared.init_hidden(2), arch)
    b, _, _ = fixed(tokens, fixed.init_hidden(2))
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError):
        fixed(tokens, fixed.init_hidden(2), archs(1, seed=4)[0])


def test_reference_forms_load_the_same_cell():
    a22, a23 = parse_arch(REF_22, "rnn"), parse_arch("0 " + REF_22, "rnn")
    assert a22 == a23 and a22.act0 == 0
    models = []
    for a in (a22, a23):
        torch.manual_seed(0)
        models.append(lm(15, 4, a, **NO_DROPOUT))
    tokens = torch.randint(0, 15, (3, 2))
    torch.testing.assert_close(models[0](tokens, models[0].init_hidden(2))[0],
                               models[1](tokens, models[1].init_hidden(2))[0], rtol=0, atol=0)


def test_gradients_reach_only_the_chosen_weights():
    torch.manual_seed(0)
    model = lm(30, 8)
    for arch in archs(3, seed=1):
        model.zero_grad(set_to_none=True)
        tokens = torch.randint(0, 30, (6, 4))
        logits, _, raw = model(tokens, model.init_hidden(4), arch)
        F.cross_entropy(logits.flatten(0, 1), tokens.flatten()).backward()
        chosen = {f"cell.node_weights.{rnn.SharedCell.key(k, p, a)}" for k, (p, a) in enumerate(arch.nodes, 1)}
        expected = chosen | {"embedding.weight", "bias", "cell.w0"}
        got = {n for n, p in model.named_parameters() if p.grad is not None}
        assert got == expected
        assert all(model.get_parameter(n).grad.abs().sum() > 0 for n in expected)


def test_variational_masks_are_constant_over_time():
    """Batch of one: a unit dropped at every step gets an all-zero weight-gradient row; a mask redrawn each of
    the 30 steps would leave (almost) no such row."""
    torch.manual_seed(0)
    size = 64
    model = lm(50, size, **{**NO_DROPOUT, "dropout_hidden": 0.5, "dropout_x": 0.5})
    arch = parse_arch(REF_22, "rnn")
    model.train()
    _, _, raw = model(torch.randint(0, 50, (30, 1)), model.init_hidden(1), arch)
    raw.sum().backward()
    w0 = model.cell.w0.grad
    x_dropped = (w0[:size] == 0).all(1)
    h_dropped = (w0[size:] == 0).all(1)
    assert 10 < x_dropped.sum() < 54 and 10 < h_dropped.sum() < 54
    for k, (prev, act) in enumerate(arch.nodes, start=1):  # the same hidden mask on s_prev in every node
        assert torch.equal((model.cell.node_weight(k, prev, act).grad == 0).all(1), h_dropped)
    y = rnn.locked_dropout(torch.ones(7, 3, 5), 0.5, training=True)
    assert torch.equal(y, y[:1].expand_as(y)) and (y == 0).any()


def test_untrained_perplexity_is_near_the_vocabulary_size(data):
    from nao_ws.data.text import load_corpus

    corpus = load_corpus("ptb", data("ptb"))
    vocab = len(corpus.dictionary)
    torch.manual_seed(0)
    model = lm(vocab, 16)
    windows = rnn.score_windows(corpus.valid, num_windows=64, bptt=35)
    for result in rnn.score(model, archs(3), windows):
        assert abs(result["valid_ppl"] / vocab - 1) < 0.10


def test_scoring_is_deterministic_and_side_effect_free(data):
    from nao_ws.data.text import load_corpus

    corpus = load_corpus("ptb", data("ptb-tiny"))
    torch.manual_seed(0)
    model = lm(len(corpus.dictionary), 8)
    windows = rnn.score_windows(corpus.valid, num_windows=16, bptt=10, burn_in=5)
    # windows spread over the whole validation set, first to last token
    assert torch.equal(windows.inputs[:, 0], corpus.valid[:15])
    assert torch.equal(windows.targets[:, -1], corpus.valid[-10:])
    weights = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    model.train()
    pool = archs(4)
    first = rnn.score(model, pool, windows)
    assert rnn.score(model, pool, windows) == first
    assert [rnn.score(model, [a], windows)[0] for a in pool] == first  # no state carried between architectures
    assert model.training and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert len({r["valid_loss"] for r in first}) == len(pool)


def test_batch_stream_resumes_exactly_and_follows_the_bptt_rule():
    data = torch.arange(2000).view(200, 10)

    def windows(stream, n=None):
        out = []
        for w in stream:
            out.append((w.inputs[0, 0].item(), w.inputs.size(0), w.lr_scale))
            assert torch.equal(w.targets, w.inputs + 10) and w.lr_scale == w.inputs.size(0) / 8
            if n is not None and len(out) == n:
                break
        return out

    whole = rnn.BatchStream(data, 8, seed=1, short_prob=0.3)
    first, second = windows(whole), windows(whole)
    assert whole.epoch == 2 and {n for _, n, _ in first[:-1] + second[:-1]} == {4, 8}  # the last one is cut short
    rows = [start // 10 for start, _, _ in first]
    assert rows[0] == 0 and all(b == a + n for a, b, (_, n, _) in zip(rows, rows[1:], first))  # contiguous
    assert rows[-1] + first[-1][1] == 199 and first != second
    full = first + second
    part = rnn.BatchStream(data, 8, seed=1, short_prob=0.3)
    head = windows(part, 7)
    resumed = rnn.BatchStream(data, 8, seed=99, short_prob=0.3)
    resumed.load_state_dict(copy.deepcopy(part.state_dict()))
    assert head + windows(resumed) + windows(resumed) == full
    jittered = rnn.BatchStream(data, 8, seed=1, jitter=5.0, max_extra=3)
    assert all(rnn.MIN_BPTT <= n <= 11 for _, n, _ in windows(jittered)[:-1])


def test_train_step_updates_only_finite_steps():
    torch.manual_seed(0)
    cfg = RnnSupernet(emb_size=8)
    model = rnn.build_lm(40, cfg)
    opt = rnn.make_optimizer(model, cfg.lr, cfg.weight_decay)
    data = torch.randint(0, 40, (60, 4))
    window = rnn.Window(data[:10], data[1:11], 10 / 35)
    arch = archs(1)[0]
    before = copy.deepcopy(model.state_dict())
    result = rnn.train_step(model, opt, window, model.init_hidden(4), arch, tar=cfg.tar, grad_clip=cfg.grad_clip)
    assert result.finite and np.isfinite(result.loss) and opt.param_groups[0]["lr"] == cfg.lr
    assert not torch.equal(model.cell.w0, before["cell.w0"])
    with torch.no_grad():
        model.cell.w0[0, 0] = float("nan")
    before = copy.deepcopy(model.state_dict())
    result = rnn.train_step(model, opt, window, result.hidden, arch, tar=cfg.tar, grad_clip=cfg.grad_clip)
    assert not result.finite and torch.equal(result.hidden, torch.zeros(4, 8))
    after = model.state_dict()
    assert all(torch.equal(after[k], v) or torch.isnan(v).any() for k, v in before.items())
    assert all(p.grad is None for p in model.parameters())
