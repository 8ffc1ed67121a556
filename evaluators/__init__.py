"""Built-in evaluators of dilmbench, each registered through the `dilmbench.evaluators` entry-point group."""
