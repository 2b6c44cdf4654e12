"""The diffusion recipe dp-diffusion, privimage and the reconstruction attack share.

* :mod:`.config` — :class:`DiffusionConfig`, the options of the network, the
  objective and DP-SGD (privimage's config extends it; the reconstruction
  prior builds one);
* :mod:`.unet` — the class-conditional diffusers UNet and the pixel edge of
  the model space (resize, pad, [−1, 1]);
* :mod:`.objective` — the DDPM ε-prediction loss with noise multiplicity K;
* :mod:`.sampling` — DPM-Solver++ or DDIM sampling with optional classifier-free guidance.

One home for them so that "PrivImage is DP-diffusion plus a semantic query"
and "the attack's prior is dp-diffusion's UNet" stay true by construction.
"""
