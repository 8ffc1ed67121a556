"""Built-in methods of dilmbench, each registered through the `dilmbench.methods` entry-point group."""
