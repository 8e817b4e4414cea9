"""Networks of the DynaDiff generator: weight VAE, latent DiT, dynamics-informed prompter."""
