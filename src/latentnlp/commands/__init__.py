"""Command-line commands, one module per model family.

Each module offers ``add_train_parser(train_subparsers)`` (``latentnlp train NAME``),
optionally ``add_root_parsers(subparsers)`` (extra top-level commands), and
functions the shared ``evaluate``/``tag`` commands dispatch to by the ``model``
name recorded in a run's ``config.json`` (see :mod:`latentnlp.cli`).
"""
