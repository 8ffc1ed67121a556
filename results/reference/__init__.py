"""Reference numbers shipped with dilmbench (installed as `dilmbench.reference`)."""
