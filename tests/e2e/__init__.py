"""Through the `hyperlab` command as a user runs it: real servers, signals, several
processes. Every slow-marked test lives here."""
