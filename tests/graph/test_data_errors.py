"""Planetoid files that cannot be used: each is refused with a DatasetError naming the file and the problem,
before anything large is allocated."""

import pickle
import time

import numpy as np
import pytest
import scipy.sparse as sp

from zoo.graph.data import load_planetoid, read_planetoid_file
from zoo.shared.errors import DatasetError
from tests.graph.test_data import _write_tiny_planetoid


def _dump(path, obj):
    path.write_bytes(pickle.dumps(obj, protocol=2))


def _load(root, name="cora"):
    return load_planetoid(name, root, download=False)


@pytest.mark.parametrize("suffix,row,col", [("allx", 4, 2), ("tx", 1, 0), ("x", 0, 3)])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_features_are_refused(tmp_path, suffix, row, col, value):
    feats, _ = _write_tiny_planetoid(tmp_path)
    rows = {"x": feats[:3], "allx": feats[:6], "tx": feats[[6, 7]]}[suffix].copy()
    rows[row, col] = value
    _dump(tmp_path / f"ind.cora.{suffix}", sp.csr_matrix(rows))
    with pytest.raises(DatasetError, match=rf"ind\.cora\.{suffix} holds 1 non-finite value.*row {row}, column {col}"):
        _load(tmp_path)


def test_non_finite_labels_are_refused(tmp_path):
    _, labels = _write_tiny_planetoid(tmp_path)
    ty = np.eye(3, dtype=np.float32)[labels[[6, 7]]]
    ty[1, 0] = np.nan
    _dump(tmp_path / "ind.cora.ty", ty)
    with pytest.raises(DatasetError, match=r"ind\.cora\.ty holds 1 non-finite"):
        _load(tmp_path)


def test_training_labels_of_one_class_are_refused(tmp_path):
    _write_tiny_planetoid(tmp_path)
    one_class = np.eye(3, dtype=np.float32)[[1] * 6]
    _dump(tmp_path / "ind.cora.y", one_class[:3])
    _dump(tmp_path / "ind.cora.ally", one_class)
    with pytest.raises(DatasetError, match=r"ind\.cora\.y: all 3 training nodes have class 1.*two classes"):
        _load(tmp_path)


@pytest.mark.parametrize("row", [[0, 0, 0], [1, 1, 0]], ids=["no class", "two classes"])
def test_a_test_node_without_exactly_one_class_is_refused(tmp_path, row):
    _, labels = _write_tiny_planetoid(tmp_path)
    ty = np.eye(3, dtype=np.float32)[labels[[6, 7]]]
    ty[0] = row  # the first stored row belongs to the first id of test.index: node 7
    _dump(tmp_path / "ind.cora.ty", ty)
    # (in the tiny set the 500 validation nodes after the training ones reach the test nodes)
    with pytest.raises(DatasetError, match=rf"ind\.cora\.ty: node 7 is a (test|validation) node but its label row has "
                                           rf"{sum(row)} classes set.*exactly one class"):
        _load(tmp_path)


def test_duplicate_test_ids_are_refused(tmp_path):
    _write_tiny_planetoid(tmp_path)
    (tmp_path / "ind.cora.test.index").write_text("7\n7\n")
    with pytest.raises(DatasetError, match=r"ind\.cora\.test\.index lists node 7 more than once"):
        _load(tmp_path)


def test_training_labels_that_disagree_with_ally_are_refused(tmp_path):
    _, labels = _write_tiny_planetoid(tmp_path)
    _dump(tmp_path / "ind.cora.y", np.eye(3, dtype=np.float32)[[2, 1, 0]])
    with pytest.raises(DatasetError, match=r"ind\.cora\.y disagrees with the first 3 rows of .*ind\.cora\.ally"):
        _load(tmp_path)


def _csr_state_declaring(shape, nnz, seed=0):
    """A real CSR matrix of ``nnz`` entries in its first columns, whose pickled shape says ``shape``."""
    rng = np.random.default_rng(seed)
    small = sp.random(shape[0], 1433, density=nnz / (shape[0] * 1433), format="csr", dtype=np.float32, random_state=rng)
    small._shape = shape  # what a tampered file can claim; the arrays stay consistent with it
    return small


@pytest.mark.parametrize("shape,nnz", [((1708, 2_000_000), 30_000), ((1000, 100_000), 20)],
                         ids=["issue example: 300 KB for 1708 x 2M", "tiny file for 1000 x 100k"])
def test_a_declared_matrix_size_out_of_proportion_with_the_file_is_refused(tmp_path, shape, nnz):
    path = tmp_path / "ind.cora.allx"
    _dump(path, _csr_state_declaring(shape, nnz))
    start = time.perf_counter()
    with pytest.raises(DatasetError, match=rf"ind\.cora\.allx declares a {shape[0]} x {shape[1]} matrix .* refusing to "
                                           "allocate"):
        read_planetoid_file(path)
    assert time.perf_counter() - start < 5  # refused from the declared shape, not after allocating it


def _shared_list_graph(nodes, length):
    neighbours = list(range(length))
    return {i: neighbours for i in range(nodes)}  # one list object, pickled once and referenced `nodes` times


@pytest.mark.parametrize("nodes,length", [(20_000, 20_000), (1_500, 1_500)], ids=["4e8 entries", "2e6 entries"])
def test_a_graph_pickle_whose_lists_share_one_object_is_refused(tmp_path, nodes, length):
    path = tmp_path / "ind.cora.graph"
    _dump(path, _shared_list_graph(nodes, length))
    assert path.stat().st_size < 500_000
    start = time.perf_counter()
    with pytest.raises(DatasetError, match=rf"ind\.cora\.graph lists {nodes * length} neighbours .* share objects"):
        read_planetoid_file(path)
    assert time.perf_counter() - start < 5


def test_shared_lists_within_what_the_file_can_hold_are_read(tmp_path):
    path = tmp_path / "ind.cora.graph"
    _dump(path, _shared_list_graph(3, 2))
    assert read_planetoid_file(path) == {0: [0, 1], 1: [0, 1], 2: [0, 1]}


@pytest.mark.parametrize("test_ids", ["7\n4000000\n", "7\n10000000000\n"], ids=["4e6", "1e10"])
def test_test_ids_beyond_the_graph_are_refused_before_sizing_anything(tmp_path, test_ids):
    # CiteSeer's loader gives missing test nodes zero rows over the span of the test ids: a huge id
    # must not size that allocation
    _write_tiny_planetoid(tmp_path, "citeseer")
    (tmp_path / "ind.citeseer.test.index").write_text(test_ids)
    big = test_ids.split()[1]
    with pytest.raises(DatasetError, match=rf"ind\.citeseer\.test\.index refers to node {big}, but the data set has at "
                                           r"most 8 nodes"):
        _load(tmp_path, "citeseer")


@pytest.mark.parametrize("content,match", [
    ("7\n" + "9" * 30 + "\n", "not a list of integers"),
    ("7\n-3\n", "must come after the 6 allx rows"),
])
def test_unusable_test_index_files(tmp_path, content, match):
    _write_tiny_planetoid(tmp_path)
    (tmp_path / "ind.cora.test.index").write_text(content)
    with pytest.raises(DatasetError, match=rf"ind\.cora\.test\.index.*{match}|{match}.*ind\.cora\.test\.index"):
        _load(tmp_path)


@pytest.mark.parametrize("graph", [{0: [1, -2]}, {0: [1, 2**40]}, {"a": [1]}, {0: (1, 2)}],
                         ids=["negative", "huge", "string key", "tuple"])
def test_adjacency_with_impossible_node_ids_is_refused(tmp_path, graph):
    path = tmp_path / "ind.cora.graph"
    _dump(path, graph)
    with pytest.raises(DatasetError, match=r"ind\.cora\.graph is not a dict of integer adjacency lists"):
        read_planetoid_file(path)
