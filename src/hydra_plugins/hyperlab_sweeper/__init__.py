"""hyperlab's Hydra Sweeper: an Optuna study run by workers that ask, train and tell."""
