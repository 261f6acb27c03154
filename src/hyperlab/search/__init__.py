"""Hyperparameter search: spaces on each parameter's appropriate scale, studies, reports."""
