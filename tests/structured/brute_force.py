"""Brute-force enumeration of every path of small linear chains (the reference for the tests)."""

from __future__ import annotations

import itertools
import math

import torch

from latentnlp.structured.linear_chain import ChainPotentials


def enumerate_chain(potentials: ChainPotentials, length: int, b: int) -> dict[tuple[int, ...], float]:
    """Score ``s(z)`` of every one of the ``C^L`` paths of chain ``b``, computed term by term."""
    start = potentials.start[b].tolist()
    edge = potentials.edge[b].tolist()
    C = potentials.num_states
    scores = {}
    for path in itertools.product(range(C), repeat=length):
        s = start[path[0]]
        for n in range(length - 1):
            s += edge[n][path[n]][path[n + 1]]
        scores[path] = s
    return scores


def brute_force(potentials: ChainPotentials, lengths: torch.Tensor) -> dict[str, torch.Tensor]:
    """log Z ``(B,)``, node ``(B, N, C)`` and edge ``(B, N-1, C, C)`` marginals, best path ``(B, N)`` and score."""
    B, N, C = potentials.batch_size, potentials.max_length, potentials.num_states
    log_z = torch.empty(B, dtype=torch.float64)
    node = torch.zeros(B, N, C, dtype=torch.float64)
    edge = torch.zeros(B, max(N - 1, 0), C, C, dtype=torch.float64)
    best = torch.full((B, N), -1, dtype=torch.long)
    best_score = torch.empty(B, dtype=torch.float64)
    for b in range(B):
        L = int(lengths[b])
        scores = enumerate_chain(potentials, L, b)
        values = torch.tensor(list(scores.values()), dtype=torch.float64)
        log_z[b] = torch.logsumexp(values, 0)
        top = max(scores, key=scores.get)
        best[b, :L] = torch.tensor(top)
        best_score[b] = scores[top]
        if log_z[b] == -math.inf:
            continue
        for path, s in scores.items():
            p = math.exp(s - log_z[b].item())
            for n in range(L):
                node[b, n, path[n]] += p
            for n in range(L - 1):
                edge[b, n, path[n], path[n + 1]] += p
    return {"log_z": log_z, "node": node, "edge": edge, "path": best, "score": best_score}
