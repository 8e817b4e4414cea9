"""Training-step and sampling cost of the generator networks at a given size, on CPU or GPU.

    python benchmarks/bench_generator.py --size small             # CPU
    python benchmarks/bench_generator.py --size paper --device cuda

The weight graph is the paper's Appendix I FNO (16 node types, 962 nodes, widths up to 6209), built
from its node counts and widths so the script needs no neuraloperator. Prints VAE and DiT training
steps per second, peak memory, and the time to generate one expert (prompt + DDIM + decode).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from dynadiff.diffusion import GaussianDiffusion
from dynadiff.nn.dit import DIT_PRESETS, LatentDiT
from dynadiff.nn.prompter import DynamicsPrompter
from dynadiff.nn.vae import VAE_PRESETS, WeightVAE, kl_divergence, reconstruction_error

# (node type, nodes, feature width) of FNO(n_modes=(12, 6), hidden 64, in/out 2, 4 layers), weightgraph layout
PAPER_FNO = (
    [("lifting_fcs_0", 128, 5), ("lifting_fcs_1", 64, 129)]
    + [
        t
        for i in range(4)
        for t in ((f"convs_{i}", 64, 6209), (f"mlp_{i}_0", 32, 65), (f"mlp_{i}_1", 64, 34))
    ]
    + [("projection_fcs_0", 128, 65), ("projection_fcs_1", 2, 129)]
)


def timed(fn, device, repeat: int) -> float:
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / repeat


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", default="small", choices=sorted(VAE_PRESETS))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--ddim-steps", type=int, default=50)
    a = p.parse_args()
    dev = torch.device(a.device)
    torch.manual_seed(0)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    vae = WeightVAE(PAPER_FNO, **VAE_PRESETS[a.size]).to(dev)
    counts = [n for _, n, _ in PAPER_FNO]
    prompter = DynamicsPrompter((2, 64, 64), hidden=64, modes=8, num_env_params=1).to(dev)
    dit = LatentDiT(counts, vae.latent_dim, prompter.prompt_dim, **DIT_PRESETS[a.size]).to(dev)
    diffusion = GaussianDiffusion(1000)
    feats = {k: torch.randn(a.batch, n, d, device=dev) for k, n, d in PAPER_FNO}
    opt_v = torch.optim.AdamW(vae.parameters(), 1e-4)
    opt_d = torch.optim.AdamW(list(dit.parameters()) + list(prompter.parameters()), 1e-4)
    obs = torch.randn(a.batch, 10, 2, 64, 64, device=dev)
    z = torch.randn(a.batch, vae.num_tokens, vae.latent_dim, device=dev)

    def vae_step():
        rec, mu, logvar = vae(feats)
        loss = reconstruction_error(rec, feats).mean() + 1e-4 * kl_divergence(mu, logvar).mean()
        opt_v.zero_grad()
        loss.backward()
        opt_v.step()

    def dit_step():
        loss = diffusion.training_loss(dit, z, prompt=prompter(obs)).mean()
        opt_d.zero_grad()
        loss.backward()
        opt_d.step()

    @torch.no_grad()
    def generate_one():
        prompt = prompter(obs[:1])
        zs = diffusion.ddim_sample(
            dit, (1, vae.num_tokens, vae.latent_dim), steps=a.ddim_steps, device=dev, prompt=prompt
        )
        vae.decode(zs)

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t_vae = timed(vae_step, dev, a.repeat)
    t_dit = timed(dit_step, dev, a.repeat)
    t_gen = timed(generate_one, dev, max(1, a.repeat // 2))
    mem = torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else float("nan")
    n_vae = sum(p.numel() for p in vae.parameters()) / 1e6
    n_dit = sum(p.numel() for p in dit.parameters()) / 1e6
    name = (
        torch.cuda.get_device_name()
        if dev.type == "cuda"
        else f"CPU x {torch.get_num_threads()} threads"
    )
    print(
        f"{a.size} generator on {name}: VAE {n_vae:.1f}M params, DiT {n_dit:.1f}M params, "
        f"{vae.num_tokens} nodes, batch {a.batch}"
    )
    print(f"VAE train step   {t_vae * 1e3:9.1f} ms  ({a.batch / t_vae:8.1f} experts/s)")
    print(f"DiT train step   {t_dit * 1e3:9.1f} ms  ({a.batch / t_dit:8.1f} samples/s)")
    print(f"generate 1 expert {t_gen * 1e3:8.1f} ms  ({a.ddim_steps} DDIM steps, prompt + decode)")
    print(f"peak GPU memory  {mem:9.2f} GiB")
    print(
        json.dumps(
            {
                "size": a.size,
                "device": name,
                "vae_mparams": n_vae,
                "dit_mparams": n_dit,
                "batch": a.batch,
                "vae_step_s": t_vae,
                "dit_step_s": t_dit,
                "generate_s": t_gen,
                "peak_gib": mem,
            }
        )
    )


if __name__ == "__main__":
    main()
