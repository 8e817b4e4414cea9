"""Adaptation methods a user would otherwise pick for a new environment, on the zoo's expert backbone.

* :mod:`.finetune`: the pre-trained base fine-tuned on the one-step pairs of the L observed frames.
* :mod:`.camel`: a context-affine expert (CAMEL, Blanke & Lelarge 2024) whose per-environment
  coefficients are solved in closed form from the observed frames: no gradient step at test time.

Each method is a harness method ``adapt(env, observations) -> predictor`` carrying ``grad_steps``
(test-time gradient steps of its last call) and ``trainable`` (parameters changed per environment)
attributes; the harness averages ``grad_steps`` over the environments it scores.
"""
