"""Evaluation harness: rollouts, metrics, baselines, figures, results JSON."""
