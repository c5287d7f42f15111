"""Neighbour sampling (graph/sampling.py) and mini-batch GraphSAGE."""

import pytest
import torch

import zoo
from zoo.graph.sampling import CSRAdjacency, NeighborSampler, sample_neighbors
from zoo.shared.errors import InputError


def _graph(n=60, e=600, seed=0):
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n, (2, e), generator=g)
    ei = ei[:, ei[0] != ei[1]]
    ei = torch.unique(ei, dim=1)  # simple graph: no multi-edges, so "distinct" is checkable by id
    return ei, n


def _in_neighbours(ei, n):
    return [set(ei[0, ei[1] == i].tolist()) for i in range(n)]


def test_csr_adjacency_lists_in_neighbours():
    ei, n = _graph()
    adj = CSRAdjacency.from_edge_index(ei, n)
    nbrs = _in_neighbours(ei, n)
    assert adj.col.numel() == ei.size(1)
    for i in range(n):
        assert sorted(adj.neighbors(i).tolist()) == sorted(nbrs[i])
    assert torch.equal(adj.degree(), torch.bincount(ei[1], minlength=n))


@pytest.mark.parametrize("fanout", [0, 1, 3, 8, -1])
def test_sampled_neighbours_are_real_distinct_and_within_fanout(fanout):
    ei, n = _graph()
    adj = CSRAdjacency.from_edge_index(ei, n)
    nbrs = _in_neighbours(ei, n)
    nodes = torch.tensor([5, 0, 17, 5 + 1, 59, 33])
    src, pos = sample_neighbors(adj, nodes, fanout, torch.Generator().manual_seed(1))
    assert bool((pos[1:] >= pos[:-1]).all())  # grouped by target, in `nodes` order
    for k, node in enumerate(nodes.tolist()):
        got = src[pos == k].tolist()
        assert set(got) <= nbrs[node]
        assert len(got) == len(set(got))  # without replacement
        want = len(nbrs[node]) if fanout < 0 else min(fanout, len(nbrs[node]))
        assert len(got) == want


def test_sampling_is_roughly_uniform():
    # node 0 has 10 in-neighbours; pick 3 of them many times: each should come up ~30% of the time
    ei = torch.stack([torch.arange(1, 11), torch.zeros(10, dtype=torch.long)])
    adj = CSRAdjacency.from_edge_index(ei, 11)
    g = torch.Generator().manual_seed(0)
    nodes = torch.zeros(2000, dtype=torch.long)
    src, _ = sample_neighbors(adj, nodes, 3, g)
    freq = torch.bincount(src, minlength=11)[1:].float() / 2000
    assert torch.allclose(freq, torch.full((10,), 0.3), atol=0.05)


def test_blocks_seeds_first_and_edges_are_real():
    ei, n = _graph()
    nbrs = _in_neighbours(ei, n)
    sampler = NeighborSampler(ei, n, fanouts=[4, 3], batch_size=8, shuffle=False,
                              generator=torch.Generator().manual_seed(0))
    seeds = torch.tensor([9, 2, 40, 7])
    batch = sampler.sample(seeds)
    assert torch.equal(batch.n_id[:4], seeds) and batch.batch_size == 4
    assert batch.n_id.unique().numel() == batch.n_id.numel()
    outer, inner = batch.blocks
    assert inner.size[1] == 4 and outer.size[1] == inner.size[0] and outer.size[0] == batch.n_id.numel()
    for block, fanout in ((inner, 4), (outer, 3)):
        src, dst = block.edge_index
        assert int(src.max()) < block.size[0] and int(dst.max()) < block.size[1]
        for t in range(block.size[1]):
            got = batch.n_id[src[dst == t]].tolist()
            node = int(batch.n_id[t])
            assert set(got) <= nbrs[node] and len(got) == min(fanout, len(nbrs[node]))
    assert (sampler._local == -1).all()  # the relabelling buffer is clean for the next batch


def test_iteration_covers_every_seed_once():
    ei, n = _graph()
    train = torch.zeros(n, dtype=torch.bool)
    train[::3] = True
    sampler = NeighborSampler(ei, n, fanouts=[2], batch_size=7, seeds=train, generator=torch.Generator().manual_seed(0))
    seen = torch.cat([b.seeds for b in sampler])
    assert len(sampler) == 3 and sorted(seen.tolist()) == train.nonzero().view(-1).tolist()


@pytest.mark.parametrize("aggr", ["mean", "max", "sum"])
def test_full_fanout_reproduces_full_batch(aggr):
    ei, n = _graph()
    ei = torch.cat([ei, ei[:, :20]], dim=1)  # multi-edges count twice in both paths
    torch.manual_seed(0)
    model = zoo.create("graphsage", in_channels=6, hidden_channels=16, num_classes=3, num_layers=3, aggr=aggr).eval()
    x = torch.randn(n, 6)
    with torch.no_grad():
        full = model(x, ei)
        for fanouts in ([-1, -1, -1], [1000, 1000, 1000]):
            sampler = NeighborSampler(ei, n, fanouts=fanouts, batch_size=16)
            for batch in sampler:
                out = model(x[batch.n_id], batch.blocks)
                torch.testing.assert_close(out, full[batch.seeds], atol=1e-5, rtol=1e-5)


def test_minibatch_gradients_flow_and_bad_blocks_raise():
    ei, n = _graph()
    model = zoo.create("graphsage", in_channels=6, hidden_channels=8, num_classes=3)
    batch = NeighborSampler(ei, n, fanouts=[3, 2], batch_size=10).sample(torch.arange(10))
    x = torch.randn(n, 6)
    out = model(x[batch.n_id], batch.blocks)
    assert out.shape == (10, 3)
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    with pytest.raises(InputError, match="blocks"):
        model(x[batch.n_id], batch.blocks[:1])
    with pytest.raises(InputError, match="block size"):
        model(x, batch.blocks)


def test_minibatch_training_cli(capsys):
    from zoo.graph import train

    s = train.run(train.build_parser().parse_args([
        "--model", "graphsage", "--dataset", "karate", "--fanouts", "5", "5", "--batch-size", "8",
        "--epochs", "5", "--seeds", "1", "--no-progress"]))
    assert s["recipe"]["fanouts"] == [5, 5] and s["recipe"]["batch_size"] == 8
    assert 0.0 <= s["test_acc_mean"] <= 100.0


def test_sampler_arguments_and_seeds_are_checked():
    from zoo.shared.errors import InvalidConfigError

    ei, n = _graph()
    with pytest.raises(InvalidConfigError, match="num_nodes"):
        NeighborSampler(ei, fanouts=[2])
    with pytest.raises(InvalidConfigError, match="fanouts"):
        NeighborSampler(ei, n, fanouts=[])
    with pytest.raises(InvalidConfigError, match="batch_size must be >= 1, got 0"):
        NeighborSampler(ei, n, fanouts=[2], batch_size=0)
    with pytest.raises(InputError, match="seed node 60 is not a node of the graph"):
        NeighborSampler(ei, n, fanouts=[2], seeds=torch.tensor([3, 60]))
    with pytest.raises(InputError, match="boolean seed mask needs one entry per node"):
        NeighborSampler(ei, n, fanouts=[2], seeds=torch.ones(n + 1, dtype=torch.bool))
    sampler = NeighborSampler(ei, n, fanouts=[2])
    with pytest.raises(InputError, match="must be distinct"):
        sampler.sample(torch.tensor([4, 4]))
    with pytest.raises(InputError, match="seed node -1"):
        sampler.sample(torch.tensor([-1, 4]))
    with pytest.raises(InputError, match="1-d integer tensor"):
        sampler.sample(torch.tensor([1.0, 2.0]))
    assert (sampler._local == -1).all()  # a refused batch leaves the relabelling buffer clean
