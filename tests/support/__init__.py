"""Helpers shared by the tests: where things are, the `hyperlab` command as a user runs it,
real servers, and the records a test reads back. Test modules import these instead of
importing from each other."""
