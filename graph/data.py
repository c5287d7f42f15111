"""Graph data: the Planetoid citation graphs (Cora, CiteSeer, PubMed) and Zachary's karate club.

Planetoid (Yang, Cohen & Salakhutdinov, "Revisiting Semi-Supervised Learning with Graph
Embeddings", ICML 2016) ships eight files per data set, ``ind.<name>.{x,y,tx,ty,allx,ally,graph,
test.index}``: Python 2 pickles of scipy CSR matrices, numpy arrays and a dict of adjacency lists.
They are read with a restricted unpickler that can only build numpy arrays, a CSR container and a
dict of int lists — no other class or function can be named by the file, so a tampered file
cannot run code — and the result is checked before use: shapes and types, finite values, and
sizes bounded by the bytes actually in the file before anything is allocated from a declared
size (a few hundred kilobytes cannot hold a matrix of gigabytes, nor adjacency lists of billions
of entries unless its lists are one object referenced many times). Labels must be usable: one
class per labelled node, at least two classes among the training nodes, distinct test ids.
Every :class:`~zoo.shared.errors.DatasetError` names the file at fault.

:func:`load_planetoid` builds the standard public split (Cora: 140 train / 500 val / 1000 test),
row-normalised features and an undirected edge list without self-loops or duplicates (Cora: 2708
nodes, 10556 directed edges; CiteSeer: 3327 / 9104, whose 15 test nodes missing from the files
get zero features, as in every public implementation).
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
import urllib.request
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from zoo.shared.atomic import atomic_open
from zoo.shared.errors import DatasetError

PLANETOID_URL = "https://github.com/kimiyoung/planetoid/raw/master/data"
PLANETOID_NAMES = {"cora": "cora", "citeseer": "citeseer", "pubmed": "pubmed"}
PLANETOID_SUFFIXES = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")


@dataclass
class GraphData:
    """One graph for node classification; has ``.x`` / ``.edge_index`` so models take it directly."""

    x: Tensor
    edge_index: Tensor
    y: Tensor
    train_mask: Tensor
    val_mask: Tensor
    test_mask: Tensor
    name: str = ""

    @property
    def num_nodes(self) -> int:
        return self.x.size(0)

    @property
    def num_edges(self) -> int:
        return self.edge_index.size(1)

    @property
    def num_features(self) -> int:
        return self.x.size(1)

    @property
    def num_classes(self) -> int:
        return int(self.y.max()) + 1

    def to(self, device) -> "GraphData":
        return GraphData(**{f.name: (getattr(self, f.name).to(device) if isinstance(getattr(self, f.name), Tensor)
                                     else getattr(self, f.name)) for f in fields(self)})

    def __repr__(self) -> str:
        return (f"GraphData({self.name}: {self.num_nodes} nodes, {self.num_edges} edges, {self.num_features} features, "
                f"{self.num_classes} classes, split {int(self.train_mask.sum())}/{int(self.val_mask.sum())}/"
                f"{int(self.test_mask.sum())})")


# ------------------------------------------------------------------------------------------------
# Safe reading of the Planetoid pickles
# ------------------------------------------------------------------------------------------------


class _CSRState:
    """Stands in for ``scipy.sparse.csr_matrix`` while unpickling: it only records the state."""

    def __setstate__(self, state):
        self.state = state


def _int_list_dict(factory=None):
    """Stands in for ``collections.defaultdict(list)``: only the ``list`` factory is allowed."""
    if factory is not list:
        raise _ForbiddenGlobal("defaultdict with a factory other than list")
    return {}


def _latin1_bytes(text, encoding="latin1"):
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _ForbiddenGlobal("_codecs.encode is only allowed for latin1 byte strings")
    return text.encode("latin1")


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class _ForbiddenGlobal(pickle.UnpicklingError):
    pass


class _PlanetoidUnpickler(pickle.Unpickler):
    """Allows exactly what the Planetoid files need and refuses every other global."""

    def find_class(self, module: str, name: str):
        if (module, name) in (("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")):
            return _numpy_reconstruct()
        if module == "numpy" and name == "ndarray":
            return np.ndarray
        if module == "numpy" and name == "dtype":
            return np.dtype
        if module in ("scipy.sparse.csr", "scipy.sparse._csr") and name == "csr_matrix":
            return _CSRState
        if module == "collections" and name == "defaultdict":
            return _int_list_dict
        if module in ("__builtin__", "builtins") and name == "list":
            return list
        if module == "_codecs" and name == "encode":  # how protocol-2 pickles from Python 3 store bytes
            return _latin1_bytes
        raise _ForbiddenGlobal(f"global '{module}.{name}' is not allowed in a Planetoid file")


def _check_array(a, path: Path) -> np.ndarray:
    if not isinstance(a, np.ndarray) or a.dtype.kind not in "biuf":
        raise DatasetError(f"{path} holds {type(a).__name__} ({getattr(a, 'dtype', '')}), expected a numeric array.")
    return a


# A dense matrix may take this many times the bytes of the file it comes from (Cora's and CiteSeer's
# sparse features: ~40-60x), or up to _ALWAYS_ALLOWED in any case; more means a declared shape the
# file's contents cannot justify.
_MAX_EXPANSION = 1024
_ALWAYS_ALLOWED = 256 * 2**20


def _human(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000


def _check_finite(a: np.ndarray, path: Path) -> np.ndarray:
    bad = ~np.isfinite(a)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise DatasetError(f"{path} holds {int(bad.sum())} non-finite value(s) (NaN or Inf), the first at "
                           f"{'row %d, column %d' % where if len(where) == 2 else 'index %s' % (where,)}; "
                           "features and labels must be finite numbers.")
    return a


def _to_dense(obj, path: Path, file_bytes: int) -> np.ndarray:
    """A CSR state (or a dense array) -> dense float32 array, refused if its size is out of
    proportion with the file."""
    if isinstance(obj, _CSRState):
        st = obj.state
        if not isinstance(st, dict) or not {"data", "indices", "indptr"} <= set(st):
            raise DatasetError(f"{path} is not a CSR matrix pickle (state keys: {sorted(st) if isinstance(st, dict) else st!r}).")
        data, indices, indptr = (_check_array(st[k], path) for k in ("data", "indices", "indptr"))
        shape = st.get("_shape", st.get("shape"))
        if not (isinstance(shape, tuple) and len(shape) == 2 and all(isinstance(s, int) and s >= 0 for s in shape)):
            raise DatasetError(f"{path}: CSR matrix has no valid shape ({shape!r}).")
        rows, cols = shape
        dense_bytes = 4 * rows * cols
        if dense_bytes > max(_ALWAYS_ALLOWED, _MAX_EXPANSION * file_bytes):
            raise DatasetError(f"{path} declares a {rows} x {cols} matrix ({_human(dense_bytes)} as float32) but the "
                               f"file holds {_human(file_bytes)} ({len(data)} stored values); refusing to allocate it. "
                               "The file is corrupted or not a Planetoid feature/label file.")
        if (indptr.ndim != 1 or len(indptr) != rows + 1 or indptr[0] != 0 or np.any(np.diff(indptr) < 0)
                or indptr[-1] != len(indices) or len(indices) != len(data)
                or (len(indices) and (indices.min() < 0 or indices.max() >= cols))):
            raise DatasetError(f"{path}: CSR matrix arrays are inconsistent with its shape {shape}.")
        dense = np.zeros(shape, dtype=np.float32)
        row_ids = np.repeat(np.arange(rows), np.diff(indptr))
        np.add.at(dense, (row_ids, indices.astype(np.int64)), data.astype(np.float32))
        return _check_finite(dense, path)
    return _check_finite(_check_array(obj, path).astype(np.float32), path)


def _check_adjacency(obj, path: Path, file_bytes: int) -> dict:
    """A dict ``node -> list of neighbours`` whose total length the file can hold: every list entry
    of a pickle takes at least two bytes, unless one list object is referenced many times."""
    if not isinstance(obj, dict) or not all(isinstance(v, list) for v in obj.values()):
        raise DatasetError(f"{path} is not a dict of integer adjacency lists.")
    entries = sum(len(v) for v in obj.values())
    if entries + len(obj) > file_bytes:
        raise DatasetError(f"{path} lists {entries} neighbours for {len(obj)} nodes in a file of {_human(file_bytes)}: "
                           "its adjacency lists share objects (a crafted pickle); refusing to expand them.")
    ids_ok = all(isinstance(k, int) and 0 <= k < 2**31 and all(isinstance(u, int) and 0 <= u < 2**31 for u in v)
                 for k, v in obj.items())
    if not ids_ok:
        raise DatasetError(f"{path} is not a dict of integer adjacency lists (node ids must be integers in "
                           "[0, 2**31)).")
    return obj


def read_planetoid_file(path: str | os.PathLike):
    """Read one ``ind.<name>.<suffix>`` file safely (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path} does not exist.")
    raw = path.read_bytes()
    if path.name.endswith(".test.index"):
        try:
            return np.array([int(line) for line in raw.decode("ascii").split()], dtype=np.int64)
        except (UnicodeDecodeError, ValueError, OverflowError) as exc:
            raise DatasetError(f"{path} is not a list of integers, one per line ({exc}).") from None
    try:
        obj = _PlanetoidUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except _ForbiddenGlobal as exc:
        raise DatasetError(f"Refused to read {path}: {exc}. Nothing in the file was executed.") from None
    except Exception as exc:  # truncated / garbage bytes raise many types
        raise DatasetError(f"{path} is not a valid Planetoid pickle ({type(exc).__name__}: {exc}); "
                           "it is truncated or corrupted, download it again.") from None
    if path.name.endswith(".graph"):
        return _check_adjacency(obj, path, len(raw))
    return _to_dense(obj, path, len(raw))


# ------------------------------------------------------------------------------------------------
# Download
# ------------------------------------------------------------------------------------------------


def download_planetoid(name: str, root: str | os.PathLike, base_url: str = PLANETOID_URL) -> Path:
    """Fetch the eight raw files of ``name`` into ``root`` (atomically, one file at a time)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for suffix in PLANETOID_SUFFIXES:
        target = root / f"ind.{name}.{suffix}"
        if target.is_file():
            continue
        url = f"{base_url.rstrip('/')}/ind.{name}.{suffix}"
        try:
            with atomic_open(target) as out, urllib.request.urlopen(url, timeout=60) as response:
                shutil.copyfileobj(response, out)
        except Exception as exc:
            raise DatasetError(f"Could not download {url} ({type(exc).__name__}: {exc}). Download the files "
                               f"ind.{name}.{{{','.join(PLANETOID_SUFFIXES)}}} elsewhere and pass their "
                               "directory as root / --data-dir.") from None
    return root


# ------------------------------------------------------------------------------------------------
# Planetoid
# ------------------------------------------------------------------------------------------------


def undirected_edges(pairs: np.ndarray, num_nodes: int) -> Tensor:
    """Both directions of every pair, no self-loops, no duplicates, sorted by (target, source)."""
    src, dst = pairs[:, 0], pairs[:, 1]
    src, dst = np.concatenate([src, dst]), np.concatenate([dst, src])
    keep = src != dst
    keys = np.unique(dst[keep].astype(np.int64) * num_nodes + src[keep])
    return torch.from_numpy(np.stack([keys % num_nodes, keys // num_nodes]))


def row_normalize(x: Tensor) -> Tensor:
    """Each row divided by its sum (rows summing to 0 stay 0)."""
    return x / x.sum(dim=1, keepdim=True).clamp(min=1e-12)


def load_planetoid(name: str, root: str | os.PathLike | None = None, *, download: bool = True,
                   base_url: str = PLANETOID_URL, normalize_features: bool = True) -> GraphData:
    """Cora, CiteSeer or PubMed with the public split, from ``root`` (downloaded there if missing)."""
    key = name.lower()
    if key not in PLANETOID_NAMES:
        raise DatasetError(f"Unknown Planetoid data set {name!r}; choose cora, citeseer or pubmed.")
    root = Path(root) if root is not None else Path.home() / ".cache" / "zoo" / "planetoid"
    missing = [s for s in PLANETOID_SUFFIXES if not (root / f"ind.{key}.{s}").is_file()]
    if missing:
        if not download:
            raise DatasetError(f"{root} lacks ind.{key}.{{{','.join(missing)}}}; pass download=True or the right directory.")
        download_planetoid(key, root, base_url)
    parts = {s: read_planetoid_file(root / f"ind.{key}.{s}") for s in PLANETOID_SUFFIXES}
    x, tx, allx, y, ty, ally = (parts[s] for s in ("x", "tx", "allx", "y", "ty", "ally"))
    graph, test_index = parts["graph"], parts["test.index"]

    dims_ok = (x.ndim == tx.ndim == allx.ndim == 2 and x.shape[1] == tx.shape[1] == allx.shape[1]
               and y.ndim == ty.ndim == ally.ndim == 2 and y.shape[1] == ty.shape[1] == ally.shape[1]
               and len(x) == len(y) and len(tx) == len(ty) == len(test_index) and len(allx) == len(ally)
               and len(x) <= len(allx))
    if not dims_ok:
        raise DatasetError(f"The {key} files in {root} do not fit together (x {x.shape}, tx {tx.shape}, allx {allx.shape}, "
                           f"y {y.shape}, ty {ty.shape}, ally {ally.shape}, {len(test_index)} test ids).")
    file = {s: root / f"ind.{key}.{s}" for s in PLANETOID_SUFFIXES}
    if not np.array_equal(y, ally[: len(y)]):
        raise DatasetError(f"{file['y']} disagrees with the first {len(y)} rows of {file['ally']}: the training "
                           "labels are ambiguous.")
    test_sorted = np.sort(test_index)
    repeated = np.unique(test_sorted[1:][test_sorted[1:] == test_sorted[:-1]])
    if repeated.size:
        raise DatasetError(f"{file['test.index']} lists node {repeated[0]} more than once ({repeated.size} repeated "
                           "ids); test ids must be distinct.")
    if len(test_sorted) and test_sorted[0] < len(allx):
        raise DatasetError(f"{file['test.index']}: test ids must come after the {len(allx)} allx rows.")
    graph_nodes = 1 + max((max(k, max(v, default=-1)) for k, v in graph.items()), default=-1)
    max_nodes = max(len(allx) + len(tx), graph_nodes)
    if len(test_sorted) and test_sorted[-1] >= max_nodes:  # before sizing anything by the test ids
        raise DatasetError(f"{file['test.index']} refers to node {test_sorted[-1]}, but the data set has at most "
                           f"{max_nodes} nodes ({len(allx)} allx + {len(tx)} tx rows, {graph_nodes} in the graph).")
    if key == "citeseer":  # some test nodes are absent from tx/ty: give them zero rows
        span = int(test_sorted[-1] - test_sorted[0]) + 1
        tx_full = np.zeros((span, tx.shape[1]), np.float32)
        ty_full = np.zeros((span, ty.shape[1]), np.float32)
        tx_full[test_sorted - test_sorted[0]] = tx
        ty_full[test_sorted - test_sorted[0]] = ty
        tx, ty = tx_full, ty_full
    features = np.concatenate([allx, tx])
    labels = np.concatenate([ally, ty])
    num_nodes = len(features)
    if len(test_index) and test_index.max() >= num_nodes:
        raise DatasetError(f"{file['test.index']} refers to node {test_index.max()} of {num_nodes}.")
    # the tx rows are stored in sorted-id order; put each at its node id
    features[test_index] = features[test_sorted]
    labels[test_index] = labels[test_sorted]

    pairs = [(int(u), int(v)) for u, nbrs in graph.items() for v in nbrs]
    pairs = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    if len(pairs) and (pairs.min() < 0 or pairs.max() >= num_nodes):
        raise DatasetError(f"{file['graph']} refers to node {pairs.max()} but there are {num_nodes} nodes.")

    x_t = torch.from_numpy(features)
    masks = [torch.zeros(num_nodes, dtype=torch.bool) for _ in range(3)]
    masks[0][: len(y)] = True
    masks[1][len(y): len(y) + 500] = True
    masks[2][torch.from_numpy(test_sorted)] = True
    _check_labels(labels, masks, len(y), len(ally), file)
    return GraphData(
        x=row_normalize(x_t) if normalize_features else x_t,
        edge_index=undirected_edges(pairs, num_nodes),
        y=torch.from_numpy(labels.argmax(1)).long(),
        train_mask=masks[0], val_mask=masks[1], test_mask=masks[2],
        name={"cora": "Cora", "citeseer": "CiteSeer", "pubmed": "PubMed"}[key],
    )


def _check_labels(labels: np.ndarray, masks: list[Tensor], num_train: int, num_ally: int, file: dict) -> None:
    """Every node of a split has exactly one class; the training nodes have at least two."""
    per_node = (labels != 0).sum(1)
    bad = np.flatnonzero((masks[0] | masks[1] | masks[2]).numpy() & (per_node != 1))
    if bad.size:
        node = int(bad[0])
        split = "training" if masks[0][node] else "validation" if masks[1][node] else "test"
        raise DatasetError(f"{file['ally'] if node < num_ally else file['ty']}: node {node} is a {split} node but its "
                           f"label row has {per_node[node]} classes set ({bad.size} such nodes); every labelled node "
                           "needs exactly one class.")
    train_classes = np.unique(labels[:num_train].argmax(1))
    if len(train_classes) < 2:
        raise DatasetError(f"{file['y']}: all {num_train} training nodes have class {train_classes[0]}; a classifier "
                           "needs at least two classes to learn from.")


# ------------------------------------------------------------------------------------------------
# Zachary's karate club: embedded, needs no download
# ------------------------------------------------------------------------------------------------

# W. W. Zachary, "An Information Flow Model for Conflict and Fission in Small Groups", 1977:
# 34 members, 78 friendships, and the club each member joined after the split (0: Mr. Hi, 1: Officer).
_KARATE_EDGES = (
    "0-1 0-2 0-3 0-4 0-5 0-6 0-7 0-8 0-10 0-11 0-12 0-13 0-17 0-19 0-21 0-31 1-2 1-3 1-7 1-13 1-17 1-19 1-21 "
    "1-30 2-3 2-7 2-8 2-9 2-13 2-27 2-28 2-32 3-7 3-12 3-13 4-6 4-10 5-6 5-10 5-16 6-16 8-30 8-32 8-33 9-33 "
    "13-33 14-32 14-33 15-32 15-33 18-32 18-33 19-33 20-32 20-33 22-32 22-33 23-25 23-27 23-29 23-32 23-33 "
    "24-25 24-27 24-31 25-31 26-29 26-33 27-33 28-31 28-33 29-32 29-33 30-32 30-33 31-32 31-33 32-33"
)
_KARATE_CLUB = "0000000001000011001010111111111111"


def karate_club() -> GraphData:
    """Zachary's karate club: one-hot node features, the two factions as classes.

    Split: 4 training nodes (the two leaders and one member of each side: 0, 1, 32, 33),
    10 validation nodes (2..6 and 27..31), the other 20 for testing.
    """
    pairs = np.array([[int(a) for a in e.split("-")] for e in _KARATE_EDGES.split()], dtype=np.int64)
    n = len(_KARATE_CLUB)
    masks = [torch.zeros(n, dtype=torch.bool) for _ in range(3)]
    masks[0][[0, 1, 32, 33]] = True
    masks[1][[2, 3, 4, 5, 6, 27, 28, 29, 30, 31]] = True
    masks[2] = ~(masks[0] | masks[1])
    return GraphData(x=torch.eye(n), edge_index=undirected_edges(pairs, n),
                     y=torch.tensor([int(c) for c in _KARATE_CLUB]), train_mask=masks[0], val_mask=masks[1],
                     test_mask=masks[2], name="KarateClub")
