"""CUDA-graph capture of the RNN training step (supernet.rnn_graphs, ``--cuda-graph``): which step runs
eagerly, which captures and which replays, the bounded cache, and the flag's one-line errors. The capture
itself needs a GPU: the last test runs only where one is."""
import copy
import dataclasses

import numpy as np
import pytest
import torch

from nao_ws.config.recipes import RnnSupernet
from nao_ws.errors import NaoWsError
from nao_ws.search.options import RnnWsSearch
from nao_ws.search.sources.supernet import check_config
from supernet import rnn, rnn_graphs, rnn_tensor
from supernet.spaces import get_space

SPACE = get_space("rnn")
RECIPE = RnnSupernet(emb_size=8, batch_size=3, bptt=6)
VOCAB = 30


def _model(device="cpu", recipe=RECIPE):
    torch.manual_seed(0)
    model = rnn.build_lm(VOCAB, recipe).to(device)
    return model, rnn.make_optimizer(model, recipe.lr, recipe.weight_decay)


def _windows(n, length=6, device="cpu"):
    g = torch.Generator().manual_seed(1)
    return [rnn.Window(torch.randint(0, VOCAB, (length, 3), generator=g).to(device),
                       torch.randint(0, VOCAB, (length, 3), generator=g).to(device), length / RECIPE.bptt)
            for _ in range(n)]


def test_lru_keys_keep_the_most_recently_used():
    keys = rnn_graphs.LruKeys(2)
    keys.put("a", 1)
    keys.put("b", 2)
    assert keys.get("a") == 1  # "a" is now the most recent
    keys.put("c", 3)
    assert "b" not in keys and keys.get("a") == 1 and keys.get("c") == 3 and len(keys) == 2
    with pytest.raises(ValueError):
        rnn_graphs.LruKeys(0)


def test_the_key_is_what_a_graph_bakes_in():
    _, optimizer = _model()
    a, b = (SPACE.sample(np.random.default_rng(s)) for s in (0, 1))
    w1, w2 = _windows(2)
    key = rnn_graphs.step_key
    assert key(a, w1, optimizer) == key(a, w2, optimizer)  # other tokens, same graph
    assert key(b, w1, optimizer) != key(a, w1, optimizer)
    assert key(a, _windows(1, length=3)[0], optimizer) != key(a, w1, optimizer)  # length and lr scale
    optimizer.param_groups[0]["lr"] /= 2  # a rollback lowers the lr
    assert key(a, w1, optimizer) != key(a, w2, _model()[1])


class _Recorded(rnn_graphs.GraphedSteps):
    """The policy of GraphedSteps without CUDA: eager steps run on the CPU, a "capture" records itself and
    its "replays" run the eager step too."""

    def __init__(self, model, optimizer, max_graphs):  # not super().__init__: it needs a CUDA model
        self.model, self.optimizer = model, optimizer
        self.kwargs = {"tar": RECIPE.tar, "grad_clip": RECIPE.grad_clip, "sync": False}
        self.max_graphs = max_graphs
        self._forget()
        self.events = []

    def _on_side_stream(self, fn):
        self.events.append("eager")
        return fn()

    def _capture(self, window, hidden, arch):
        self.events.append("capture")
        steps = self

        class Replayed:
            def replay(self, window, hidden):
                steps.events.append("replay")
                return rnn.train_step(steps.model, steps.optimizer, window, hidden, arch, **steps.kwargs)

        return Replayed()


def test_a_key_steps_eagerly_first_then_captures_then_replays_within_a_bounded_cache():
    model, optimizer = _model()
    steps = _Recorded(model, optimizer, max_graphs=1)
    a, b = (SPACE.sample(np.random.default_rng(s)) for s in (0, 1))
    hidden = model.init_hidden(3)
    for arch, window in zip([a, a, a, b, b, a], _windows(6)):
        before = model.embedding.weight.detach().clone()
        result = steps(window, hidden, arch)
        hidden = result.hidden
        assert bool(result.finite) and not torch.equal(before, model.embedding.weight)  # every call is a step
    # b's capture dropped a's graph and a's "seen" mark: a starts over with an eager step
    assert steps.events == ["eager", "capture", "replay", "replay", "eager", "capture", "replay", "eager"]


def test_a_loaded_optimizer_state_drops_every_graph():
    """A rollback loads a checkpoint into the optimiser, which replaces the momentum buffers the graphs
    update by address: the graphs go, and each key starts over with an eager step."""
    model, optimizer = _model()
    steps = _Recorded(model, optimizer, max_graphs=4)
    a = SPACE.sample(np.random.default_rng(0))
    hidden = model.init_hidden(3)
    windows = _windows(5)
    for window in windows[:3]:
        hidden = steps(window, hidden, a).hidden
    model.load_state_dict(model.state_dict())  # copies in place: the graphs stay valid
    hidden = steps(windows[3], hidden, a).hidden
    optimizer.load_state_dict(optimizer.state_dict())
    steps(windows[4], hidden, a)
    assert steps.events == ["eager", "capture", "replay", "replay", "replay", "eager"] and len(steps.graphs) == 0


@pytest.mark.parametrize("output", rnn.CELL_OUTPUTS)
def test_a_captured_step_makes_no_index_tensor_of_its_own(output):
    """What ``step_constants`` makes before a capture is every index tensor the step then asks for, with either
    cell output: one made during a capture would be a host-to-GPU copy, which a CUDA graph cannot hold."""
    model, optimizer = _model()
    model.cell.output = output
    arch = SPACE.sample(np.random.default_rng(3))
    rnn_tensor._device_indices.cache_clear()
    rnn_graphs.step_constants(model, arch)
    made = rnn_tensor._device_indices.cache_info().misses
    rnn.train_step(model, optimizer, _windows(1)[0], model.init_hidden(3), arch, tar=RECIPE.tar,
                   grad_clip=RECIPE.grad_clip, amp=True)
    assert rnn_tensor._device_indices.cache_info().misses == made == 1


def test_cuda_graph_is_a_one_line_error_where_it_cannot_apply():
    ptb = RnnWsSearch(task="ptb", space="rnn", device="cpu", cuda_graph=True, seeds=100)
    with pytest.raises(NaoWsError, match="^--cuda-graph .* needs CUDA.*drop --cuda-graph"):
        check_config(ptb)
    with pytest.raises(NaoWsError, match="--cuda-graph .*--deterministic"):
        check_config(dataclasses.replace(ptb, deterministic=True))
    model, optimizer = _model()
    with pytest.raises(ValueError, match="CUDA device"):
        rnn_graphs.GraphedSteps(model, optimizer, tar=0.0, grad_clip=1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_graphed_steps_equal_eager_steps_on_the_gpu():
    """Replays equal eager steps, also after a rollback has loaded the optimisers' states from a copy."""
    recipe = dataclasses.replace(RECIPE, **dict.fromkeys(rnn.DROPOUTS, 0.0))
    (eager, eager_opt), (graphed, graphed_opt) = _model("cuda", recipe), _model("cuda", recipe)
    steps = rnn_graphs.GraphedSteps(graphed, graphed_opt, tar=recipe.tar, grad_clip=recipe.grad_clip)
    a, b = (SPACE.sample(np.random.default_rng(s)) for s in (0, 1))
    h_eager = h_graphed = eager.init_hidden(3)
    archs, windows = [a, a, a, b, b, b, a, a, a, a], _windows(10, device="cuda")
    for i, (arch, window) in enumerate(zip(archs, windows)):
        if i == 7:  # a graph for a exists; the loaded momentum buffers are new tensors
            for optimizer in (eager_opt, graphed_opt):
                optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))
        r_eager = rnn.train_step(eager, eager_opt, window, h_eager, arch, tar=recipe.tar, grad_clip=recipe.grad_clip)
        r_graphed = steps(window, h_graphed, arch)
        h_eager, h_graphed = r_eager.hidden, r_graphed.hidden
        assert r_graphed.loss.item() == pytest.approx(r_eager.loss, rel=1e-5)
    torch.testing.assert_close(h_graphed, h_eager, rtol=1e-5, atol=1e-6)
    for (name, p), q in zip(eager.named_parameters(), graphed.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6, msg=name)
    assert len(steps.graphs) == 1  # a's graph, captured again after the load
