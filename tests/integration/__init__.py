"""In this process, from configs composed as the command composes them (the cfg fixture):
run(), validation, study setup, the worker, checkpoints. No `hyperlab` command."""
