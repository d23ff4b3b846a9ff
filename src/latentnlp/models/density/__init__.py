"""Density estimators for binary vectors: NADE, MADE and the Bernoulli RBM.

Every model here follows one protocol, which the shared Trainer and the
``latentnlp train nade|made|rbm`` / ``evaluate`` / ``sample`` commands rely on:

* ``Model(config)`` with a dataclass ``config`` (``to_dict()``), input dimension ``config.n_dims``;
* ``forward(x, noise=None) -> dict`` of ``(B,)`` per-example terms with ``"loss"`` in nats
  (and ``"surrogate"`` when the gradient is not the loss's own, as for contrastive divergence);
* ``optimization_phases(alternate) -> {"joint": params}``; optional ``sample_noise(batch_size, generator)``;
* ``monitor``: the validation key to minimise, and ``validation_metrics(x_valid) -> dict``;
* ``evaluate(x, ...) -> DensityReport`` (nats per example, estimator named);
* ``sample(n, generator) -> (n, D)`` float 0/1.
"""
