"""Library pieces on their own, fast: plain Python values in, no composed config, no command."""
