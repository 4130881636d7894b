"""Reports hold no tables of their own: a statement is computed on request from the custody,
transformation, certificate and event tables, through their (facility, time) indexes."""
