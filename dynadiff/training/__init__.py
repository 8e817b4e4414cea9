"""Training loops for the generator: plain, readable, resumable."""
