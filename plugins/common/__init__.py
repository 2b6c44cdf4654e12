"""The public layer first-party plugins share; plugins import it, never each other's private modules.

Each module is named for what it holds:

* :mod:`.classifiers` — the small CNN / ResNet classifiers, their trainer,
  ``predict_logits``, ``embed`` and ``accuracy`` (downstream accuracy, the
  domain feature space, PrivImage's semantic query);
* :mod:`.devices` — which device a metric or a generator's own work runs on;
* :mod:`.pixels` — [0, 1] ↔ [−1, 1] ↔ uint8 conversions;
* :mod:`.subsample` — the seeded subset every metric and attack caps with;
* :mod:`.pairwise` — per-pair MSE / PSNR / SSIM / LPIPS and nearest-neighbour
  scores (the pairwise metrics, the reconstruction attack);
* :mod:`.features` — pixel / PCA feature maps and nearest-neighbour distances
  (the membership attacks);
* :mod:`.hub` — the torch hub checkpoint folder the weight finders search;
* :mod:`.ema` — the EMA of a network's weights that generators sample from;
* :mod:`.grid` — the ``samples.png`` class grid a generator's ``save`` writes;
* :mod:`.artifacts` — a fitted generator's directory (``model.json``, ledger,
  safe weight loading);
* :mod:`.diffusion` — the UNet, DDPM objective, samplers and config of
  dp-diffusion, privimage and the reconstruction prior.

Third-party plugins may use it too; it imports only ``ppds_core`` and
libraries, never a plugin.
"""
