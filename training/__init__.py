"""instrumentd.training: corpora -> features -> checkpoints, and the paper's tables and figures.

Modules, one step each: ``irmas`` (reading the IRMAS layout), ``synth`` with ``midi`` and ``render``
(a synthetic corpus in that layout), ``prepare`` (``.pt`` features), ``bundle`` and ``dataset``
(features as tensors), ``train`` (the paper's protocol), ``evaluate`` (Table 3, Figures 3 and 4),
``ablation`` (Tables 4 and 5), ``bench``. Their command-line front ends live in ``instrumentd.clients.commands``.
"""
