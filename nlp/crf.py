"""Linear-chain conditional random field (Lafferty et al. 2001), the output layer of the
BiLSTM-CRF tagger (Lample et al. 2016, arXiv:1603.01360).

For emissions ``e[t, y]`` (one score per position and tag) and a tag path ``y_1 .. y_L``::

    score(y) = start[y_1] + e[1, y_1] + sum_t (trans[y_{t-1}, y_t] + e[t, y_t]) + end[y_L]
    log p(y | x) = score(y) - log Z,    log Z = logsumexp over every path of score(path)

``log Z`` comes from the forward algorithm, the best path from Viterbi, both in log space and
vectorised over the batch (one Python step per position, never per sequence).

Checkpoint layout: pytorch-crf's ``torchcrf.CRF`` -- ``start_transitions`` (num_tags,),
``end_transitions`` (num_tags,), ``transitions`` (num_tags, num_tags) with
``transitions[i, j]`` the score of moving from tag i to tag j. The call signature is pytorch-crf's
too (``crf(emissions, tags, mask=, reduction=)`` with ``reduction="sum"`` by default,
``crf.decode(emissions, mask=)``), so a model written for it runs unchanged.

Beyond it: tag-scheme constraints (:func:`allowed_transitions`, applied to training and decoding),
per-position marginals (forward-backward) and n-best Viterbi.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import nn

from zoo.shared.errors import InputError, InvalidConfigError

# Score of a forbidden transition in the log-likelihood and the marginals: exp(-1e4) is exactly 0
# in float32 and float64, yet stays finite so no gradient turns into NaN (as -inf would in
# logsumexp's backward when a whole column is forbidden). Decoding uses -inf: there is no gradient.
IMPOSSIBLE = -1e4

REDUCTIONS = ("none", "sum", "mean", "token_mean")


class Allowed(NamedTuple):
    """Which transitions a tag scheme allows: ``transitions[i, j]`` (i -> j), ``start[j]`` (a path
    may begin with j) and ``end[i]`` (a path may end with i). All boolean tensors."""

    transitions: torch.Tensor
    start: torch.Tensor
    end: torch.Tensor


def allowed_transitions(tag_names: Sequence[str], scheme: str = "BIO") -> Allowed:
    """The transitions a tag scheme allows between ``tag_names`` (in tag-index order).

    BIO (IOB2): ``I-X`` only after ``B-X`` or ``I-X``, never first. BIOES: ``I-X``/``E-X`` only
    after ``B-X``/``I-X``; ``B-X``/``I-X`` must be followed by ``I-X``/``E-X``; a path starts with
    ``O``/``B-``/``S-`` and ends with ``O``/``E-``/``S-``.
    """
    scheme = scheme.upper()
    if scheme not in ("BIO", "BIOES"):
        raise InvalidConfigError(f"scheme={scheme!r}: expected 'BIO' or 'BIOES'")
    prefixes = "BI" if scheme == "BIO" else "BIES"
    parsed = []
    for name in tag_names:
        if name == "O":
            parsed.append(("O", None))
        elif len(name) > 2 and name[1] == "-" and name[0] in prefixes:
            parsed.append((name[0], name[2:]))
        else:
            raise InvalidConfigError(
                f"tag {name!r} is not a {scheme} tag: expected 'O' or one of "
                f"{', '.join(p + '-TYPE' for p in prefixes)}")

    continuing = ("I",) if scheme == "BIO" else ("I", "E")

    def follows(prev, nxt) -> bool:
        (p, p_type), (n, n_type) = prev, nxt
        if n in continuing:  # continues the previous chunk: same type, and one was open
            return p in ("B", "I") and p_type == n_type
        # O or a new chunk: in BIOES an open chunk (B-, I-) must be closed by E- first
        return scheme == "BIO" or p not in ("B", "I")

    n = len(parsed)
    trans = torch.tensor([[follows(parsed[i], parsed[j]) for j in range(n)] for i in range(n)],
                         dtype=torch.bool).reshape(n, n)
    start = torch.tensor([p in ("O", "B", "S") for p, _ in parsed], dtype=torch.bool)
    if scheme == "BIO":
        end = torch.ones(n, dtype=torch.bool)
    else:
        end = torch.tensor([p in ("O", "E", "S") for p, _ in parsed], dtype=torch.bool)
    return Allowed(trans, start, end)


class CRF(nn.Module):
    """A linear-chain CRF over ``num_tags`` tags; inputs are time-first unless ``batch_first``."""

    def __init__(self, num_tags: int, batch_first: bool = False,
                 constraints: Allowed | None = None) -> None:
        super().__init__()
        if isinstance(num_tags, bool) or not isinstance(num_tags, int) or num_tags < 1:
            raise InvalidConfigError(f"num_tags={num_tags!r}: expected a positive int")
        if not isinstance(batch_first, bool):
            raise InvalidConfigError(f"batch_first={batch_first!r}: expected True or False")
        self.num_tags = num_tags
        self.batch_first = batch_first
        self.start_transitions = nn.Parameter(torch.empty(num_tags))
        self.end_transitions = nn.Parameter(torch.empty(num_tags))
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))
        # not persistent: the state_dict stays exactly pytorch-crf's
        self.register_buffer("allowed", None, persistent=False)
        self.register_buffer("allowed_start", None, persistent=False)
        self.register_buffer("allowed_end", None, persistent=False)
        self.reset_parameters()
        self.set_constraints(constraints)

    def reset_parameters(self) -> None:
        for p in (self.start_transitions, self.end_transitions, self.transitions):
            nn.init.uniform_(p, -0.1, 0.1)  # pytorch-crf's initialisation

    def set_constraints(self, constraints: Allowed | None) -> None:
        """Forbid the transitions that ``constraints`` (from :func:`allowed_transitions`) does not
        allow, in the log-likelihood, the marginals and decoding; ``None`` lifts them."""
        if constraints is None:
            self.allowed = self.allowed_start = self.allowed_end = None
            return
        trans, start, end = (torch.as_tensor(c) for c in constraints)
        n = self.num_tags
        if trans.shape != (n, n) or start.shape != (n,) or end.shape != (n,):
            raise InvalidConfigError(
                f"constraints have shapes {tuple(trans.shape)}, {tuple(start.shape)}, "
                f"{tuple(end.shape)}; a CRF of num_tags={n} needs ({n}, {n}), ({n},), ({n},)")
        device = self.transitions.device
        self.allowed = trans.to(device=device, dtype=torch.bool)
        self.allowed_start = start.to(device=device, dtype=torch.bool)
        self.allowed_end = end.to(device=device, dtype=torch.bool)

    def extra_repr(self) -> str:
        return (f"num_tags={self.num_tags}, batch_first={self.batch_first}, "
                f"constrained={self.allowed is not None}")

    # -- the three score tables, with the constraints applied --------------------------------
    def _scores(self, forbidden: float = IMPOSSIBLE):
        start, end, trans = self.start_transitions, self.end_transitions, self.transitions
        if self.allowed is not None:
            start = start.masked_fill(~self.allowed_start, forbidden)
            end = end.masked_fill(~self.allowed_end, forbidden)
            trans = trans.masked_fill(~self.allowed, forbidden)
        return start, end, trans

    # -- public API --------------------------------------------------------------------------
    def forward(self, emissions: torch.Tensor, tags: torch.Tensor,
                mask: torch.Tensor | None = None, reduction: str = "sum") -> torch.Tensor:
        """Log-likelihood ``log p(tags | emissions)``, reduced over the batch like pytorch-crf."""
        if reduction not in REDUCTIONS:
            raise InputError(f"reduction={reduction!r}: expected one of {', '.join(REDUCTIONS)}")
        emissions, tags, mask = self._prepare(emissions, tags, mask)
        llh = self._score(emissions, tags, mask) - self._log_partition(emissions, mask)
        if reduction == "none":
            return llh
        if reduction == "sum":
            return llh.sum()
        if reduction == "mean":
            return llh.mean()
        return llh.sum() / mask.sum()

    def score(self, emissions, tags, mask=None) -> torch.Tensor:
        """Unnormalised score of the given tag paths, shape (batch,)."""
        return self._score(*self._prepare(emissions, tags, mask))

    def log_partition(self, emissions, mask=None) -> torch.Tensor:
        """``log Z`` of each sequence (forward algorithm), shape (batch,)."""
        emissions, _, mask = self._prepare(emissions, None, mask)
        return self._log_partition(emissions, mask)

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor | None = None) -> list[list[int]]:
        """The best tag path of each sequence (Viterbi), as a list of lists of its own length."""
        emissions, _, mask = self._prepare(emissions, None, mask)
        return self._viterbi(emissions, mask)

    @torch.no_grad()
    def decode_nbest(self, emissions: torch.Tensor, mask: torch.Tensor | None = None,
                     k: int = 1) -> list[list[tuple[list[int], float]]]:
        """The ``k`` best paths of each sequence with their scores, best first (fewer when fewer
        paths exist or the constraints allow fewer)."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InputError(f"k={k!r}: expected a positive int")
        emissions, _, mask = self._prepare(emissions, None, mask)
        return self._viterbi_nbest(emissions, mask, k)

    def marginals(self, emissions: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``p(y_t = j | x)`` for every position and tag (forward-backward), shaped like
        ``emissions``; each real position sums to 1 over tags, padded positions are 0."""
        emissions, _, mask = self._prepare(emissions, None, mask)
        probs = self._marginals(emissions, mask)
        return probs.transpose(0, 1) if self.batch_first else probs

    # -- input checks ------------------------------------------------------------------------
    def _prepare(self, emissions, tags, mask):
        """Check the inputs and return them time-first: (T, B, N), (T, B) long, (T, B) bool."""
        layout = "(batch, length" if self.batch_first else "(length, batch"
        if not isinstance(emissions, torch.Tensor) or emissions.dim() != 3:
            raise InputError(f"emissions must be a 3-d tensor {layout}, num_tags), got "
                             f"{getattr(emissions, 'shape', type(emissions).__name__)}")
        if not emissions.is_floating_point():
            raise InputError(f"emissions must be floating point, got {emissions.dtype}")
        if emissions.size(-1) != self.num_tags:
            raise InputError(f"emissions have {emissions.size(-1)} scores per position in their "
                             f"last dimension; this CRF has num_tags={self.num_tags}")
        b_dim = 0 if self.batch_first else 1
        if emissions.size(b_dim) == 0:
            raise InputError(f"empty batch: emissions have shape {tuple(emissions.shape)} {layout}"
                             f", num_tags)")
        if emissions.size(1 - b_dim) == 0:
            raise InputError(f"sequences of length 0: emissions have shape "
                             f"{tuple(emissions.shape)} {layout}, num_tags)")
        for name, t in (("tags", tags), ("mask", mask)):
            if t is None:
                continue
            if not isinstance(t, torch.Tensor) or t.dim() != 2:
                raise InputError(f"{name} must be a 2-d tensor {layout}), got "
                                 f"{getattr(t, 'shape', type(t).__name__)}")
            for dim, what in ((b_dim, "batch size"), (1 - b_dim, "length")):
                if t.size(dim) != emissions.size(dim):
                    raise InputError(f"{name} have {what} {t.size(dim)} but emissions have "
                                     f"{emissions.size(dim)} (shapes {tuple(t.shape)} and "
                                     f"{tuple(emissions.shape)}, layout {layout}, ...))")
        if self.batch_first:
            emissions = emissions.transpose(0, 1)
            tags = tags.transpose(0, 1) if tags is not None else None
            mask = mask.transpose(0, 1) if mask is not None else None
        if mask is None:
            mask = torch.ones(emissions.shape[:2], dtype=torch.bool, device=emissions.device)
        else:
            if mask.is_floating_point() or mask.is_complex():
                raise InputError(f"mask must be bool or integer 0/1, got {mask.dtype}")
            mask = mask.bool()
            off_first = ~mask[0]
            if off_first.any():
                raise InputError(f"mask is off at the first step of sequence(s) "
                                 f"{off_first.nonzero().flatten().tolist()}; every sequence "
                                 f"needs at least its first position on")
            gaps = mask[1:] & ~mask[:-1]
            if gaps.any():
                raise InputError(f"mask turns on again after an off step in sequence(s) "
                                 f"{gaps.any(0).nonzero().flatten().tolist()}; masks must be "
                                 f"on for a prefix of each sequence and off after it")
        if tags is not None:
            if tags.is_floating_point() or tags.dtype == torch.bool:
                raise InputError(f"tags must be integer tag indices, got {tags.dtype}")
            bad = ((tags < 0) | (tags >= self.num_tags)) & mask
            if bad.any():
                t, b = bad.nonzero()[0].tolist()
                raise InputError(f"tags out of range: {tags[t, b].item()} in sequence {b} at "
                                 f"position {t}; tags must be in [0, {self.num_tags})")
            tags = tags.long().masked_fill(~mask, 0)  # padding may hold any value, e.g. -100
            if self.allowed is not None:
                self._check_allowed(tags, mask)
        return emissions, tags, mask

    def _check_allowed(self, tags, mask):
        last = tags.gather(0, (mask.sum(0) - 1).unsqueeze(0)).squeeze(0)
        bad_step = ~self.allowed[tags[:-1], tags[1:]] & mask[1:]
        problems = []
        bad_first, bad_last = ~self.allowed_start[tags[0]], ~self.allowed_end[last]
        if bad_first.any():
            problems.append(f"sequence(s) {bad_first.nonzero().flatten().tolist()} start with a "
                            f"tag the constraints forbid first")
        if bad_last.any():
            problems.append(f"sequence(s) {bad_last.nonzero().flatten().tolist()} end with a "
                            f"tag the constraints forbid last")
        if bad_step.any():
            t, b = bad_step.nonzero()[0].tolist()
            problems.append(f"sequence {b} moves {tags[t, b].item()} -> {tags[t + 1, b].item()} at "
                            f"position {t + 1}, a transition the constraints forbid")
        if problems:
            raise InputError("gold tags break the CRF's constraints: " + "; ".join(problems))

    # -- the algorithms, time-first ----------------------------------------------------------
    def _score(self, emissions, tags, mask):
        """Score of the gold path: every term at once, no loop over time."""
        start, end, trans = self._scores()
        on = mask.to(emissions.dtype)
        emit = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)             # (T, B)
        step = trans[tags[:-1], tags[1:]]                                    # (T-1, B)
        last = tags.gather(0, (mask.sum(0) - 1).unsqueeze(0)).squeeze(0)     # (B,)
        return (start[tags[0]] + (emit * on).sum(0) + (step * on[1:]).sum(0) + end[last])

    def _forward_alphas(self, emissions, trans, start):
        """alpha[t, b, j] = log of the summed scores of all prefixes of length t + 1 ending in tag
        j. Run to the longest length for every sequence: a sequence reads its own alphas up to its
        last position only (masks are prefixes), so the loop needs no mask."""
        trans_t = trans.t().contiguous()  # [j, i]: the logsumexp reduces the innermost dim
        alpha = start + emissions[0]
        alphas = [alpha]
        for t in range(1, emissions.size(0)):
            # logsumexp_i(alpha_i + trans[i, j]) + e[t, j]: the emission does not depend on i
            alpha = torch.logsumexp(alpha.unsqueeze(1) + trans_t, dim=2) + emissions[t]
            alphas.append(alpha)
        return torch.stack(alphas)                                           # (T, B, N)

    @staticmethod
    def _at_last_step(x, mask):
        """x[length - 1, b] of each sequence, for x of shape (T, B, N)."""
        last = (mask.sum(0) - 1).view(1, -1, 1).expand(1, -1, x.size(2))
        return x.gather(0, last).squeeze(0)

    def _log_partition(self, emissions, mask):
        start, end, trans = self._scores()
        alphas = self._forward_alphas(emissions, trans, start)
        return torch.logsumexp(self._at_last_step(alphas, mask) + end, dim=1)

    def _marginals(self, emissions, mask):
        """Forward-backward: p(y_t = j) = exp(alpha[t, j] + beta[t, j] - log Z)."""
        start, end, trans = self._scores()
        alpha = self._forward_alphas(emissions, trans, start)
        # beta[t, b, i] = log of the summed scores of all suffixes after tag i at t (incl. end);
        # from each sequence's last position down, so a padded step keeps beta = end
        beta = end.expand_as(emissions[0])
        betas = [beta]
        for t in range(emissions.size(0) - 1, 0, -1):
            nxt = torch.logsumexp(trans + (emissions[t] + beta).unsqueeze(1), dim=2)
            beta = torch.where(mask[t].unsqueeze(1), nxt, beta)
            betas.append(beta)
        beta = torch.stack(betas[::-1])                                     # (T, B, N)
        log_z = torch.logsumexp(self._at_last_step(alpha, mask) + end, dim=1)  # (B,)
        probs = (alpha + beta - log_z.view(1, -1, 1)).exp()
        return probs * mask.unsqueeze(2)

    def _viterbi(self, emissions, mask):
        """max/argmax recursion with backpointers, then one backtrack for the whole batch with
        ``gather``; the paths leave the tensor once, in the final ``tolist``."""
        start, end, trans = self._scores(float("-inf"))
        trans_t = trans.t().contiguous()  # [j, i]: the max reduces the innermost dim
        score = start + emissions[0]
        scores, backpointers = [score], []
        for t in range(1, emissions.size(0)):  # unmasked, as in _forward_alphas
            best, prev = (score.unsqueeze(1) + trans_t).max(dim=2)          # over the previous tag
            score = best + emissions[t]
            scores.append(score)
            backpointers.append(prev)
        last = self._at_last_step(torch.stack(scores), mask)
        tag = (last + end).argmax(dim=1, keepdim=True)                      # (B, 1)
        if backpointers:
            # past its end a sequence points every tag to itself, so the backtrack from T - 1
            # carries its best last tag down to its real last position
            keep = torch.arange(self.num_tags, device=emissions.device)
            backpointers = torch.where(mask[1:].unsqueeze(2), torch.stack(backpointers), keep)
        path = [tag]
        for prev in reversed(backpointers):
            tag = prev.gather(1, tag)
            path.append(tag)
        paths = torch.cat(path[::-1], dim=1).tolist()                        # (B, T), one copy
        return [p[:n] for p, n in zip(paths, mask.sum(0).tolist())]

    def _viterbi_nbest(self, emissions, mask, k):
        """Viterbi keeping the k best partial paths per tag: score[b, j, r] is the r-th best
        prefix ending in j; a backpointer names (previous tag, its rank) as tag * k + rank."""
        start, end, trans = self._scores(float("-inf"))
        seq_len, batch = mask.shape
        n = self.num_tags
        score = emissions.new_full((batch, n, k), float("-inf"))
        score[:, :, 0] = start + emissions[0]
        keep = torch.arange(n * k, device=emissions.device).view(1, n, k).expand(batch, n, k)
        backpointers = []
        for t in range(1, seq_len):
            # cand[b, i, j, r]: from the r-th best prefix at i to j -> top k over (i, r) for each j
            cand = score.unsqueeze(2) + trans.view(1, n, n, 1)
            cand = cand.permute(0, 2, 1, 3).reshape(batch, n, n * k)
            best, prev = cand.topk(k, dim=2)                                # (B, N_j, k)
            on = mask[t].view(batch, 1, 1)
            score = torch.where(on, best + emissions[t].unsqueeze(2), score)
            backpointers.append(torch.where(on, prev, keep))
        final = (score + end.view(1, n, 1)).reshape(batch, n * k)
        top, flat = final.topk(k, dim=1)                                     # (B, k)
        path = [flat // k]
        for prev in reversed(backpointers):
            flat = prev.reshape(batch, n * k).gather(1, flat)
            path.append(flat // k)
        paths = torch.stack(path[::-1], dim=2).tolist()                      # (B, k, T)
        scores = top.tolist()
        lengths = mask.sum(0).tolist()
        return [[(p[:length], s) for p, s in zip(ps, ss) if s != float("-inf")]
                for ps, ss, length in zip(paths, scores, lengths)]
