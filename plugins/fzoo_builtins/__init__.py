"""Built-in fzoo plugins, written only against the public ``fzoo`` API."""
