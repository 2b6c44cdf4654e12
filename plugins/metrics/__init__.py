"""First-party metrics: FID and domain FD, precision/recall, LPIPS/SSIM/PSNR/MSE, downstream accuracy, ReRo."""
