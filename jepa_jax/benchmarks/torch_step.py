"""The V-JEPA 2 train step in PyTorch, built from transformers' VJEPA2Model modules (the `interop` extra): the
independent reference `jepa-jax bench --compare torch` times ours against.

It imports no JAX, so a process running only this side (`peak_resident_bytes`) holds only PyTorch's memory.
"""

import copy

import numpy as np

from jepa_jax.benchmarks import memory

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TorchStep:
    """One EMA train step as the official V-JEPA 2 code runs it.

    The target encoder (an EMA copy, no gradient) encodes the whole clip and its output is LayerNorm-ed; for each
    mask config the context encoder encodes only the context tokens and the predictor predicts the target tokens
    from them; the L1 loss is averaged over the mask configs; AdamW (weight decay on weights of more than one
    dimension) updates, then the EMA copy follows with momentum `ema`. Module for module this is VJEPA2Model's
    encoder and predictor; with our weights loaded (`state_dict`) the loss equals ours on the same batch.
    """

    def __init__(self, hf_config: dict, state_dict: dict | None = None, *, lr: float = 1e-4,
                 weight_decay: float = 0.04, ema: float = 0.999, dtype: str = "float32", device: str = "cpu"):
        import torch  # pylint: disable=g-import-not-at-top
        import transformers  # pylint: disable=g-import-not-at-top
        self.torch, self.device, self.ema = torch, torch.device(device), ema
        model = transformers.VJEPA2Model(transformers.VJEPA2Config(**hf_config, attn_implementation="sdpa"))
        if state_dict is not None:
            model.load_state_dict({k: torch.from_numpy(np.array(v, np.float32)) for k, v in state_dict.items()},
                                  strict=True)
        self.encoder, self.predictor = model.encoder.to(self.device), model.predictor.to(self.device)
        self.target = copy.deepcopy(self.encoder).requires_grad_(False)
        trained = [*self.encoder.parameters(), *self.predictor.parameters()]
        self.optimizer = torch.optim.AdamW([{"params": [p for p in trained if p.ndim > 1]},
                                            {"params": [p for p in trained if p.ndim <= 1], "weight_decay": 0.0}],
                                           lr=lr, weight_decay=weight_decay)
        self.autocast = torch.autocast(self.device.type, dtype=getattr(torch, dtype), enabled=dtype != "float32")
        shape = (1, 1, 3, 1, 1)
        self.mean, self.std = (torch.tensor(v, device=self.device).reshape(shape)
                               for v in (IMAGENET_MEAN, IMAGENET_STD))

    def to_device(self, video: np.ndarray, masks) -> tuple:
        """Host batch -> device tensors: video uint8 [B, T, H, W, C] -> [B, T, C, H, W], mask indices as int64."""
        torch = self.torch
        video = torch.from_numpy(np.ascontiguousarray(video)).to(self.device).permute(0, 1, 4, 2, 3)
        return video, [tuple(torch.from_numpy(np.asarray(i, np.int64)).to(self.device) for i in pair) for pair in masks]

    def encode(self, encoder, video, keep=None):
        """Normalised video [B, T, C, H, W] -> tokens [B, N or K, D]; `keep` [B, K] encodes only those tokens."""
        x = encoder.embeddings(video)
        if keep is not None:
            x = gather(x, keep)
        for layer in encoder.layer:
            x = layer(x, keep)[0]
        return encoder.layernorm(x)

    def loss(self, video, masks):
        """The step's loss (a 0-d tensor with gradient) on device tensors from `to_device`."""
        torch = self.torch
        video = (video.float() / 255.0 - self.mean) / self.std
        with self.autocast:
            with torch.no_grad():
                targets = self.encode(self.target, video)
                targets = torch.nn.functional.layer_norm(targets.float(), targets.shape[-1:])
            losses = []
            for context_idx, target_idx in masks:
                context = self.encode(self.encoder, video, context_idx)
                # The predictor gathers its context from a full [B, N, D] sequence: scatter the context tokens in.
                full = torch.zeros(context.shape[0], targets.shape[1], context.shape[2], dtype=context.dtype,
                                   device=self.device)
                full = full.scatter(1, context_idx[..., None].expand(-1, -1, context.shape[-1]), context)
                predicted = self.predictor(full, [context_idx], [target_idx]).last_hidden_state
                losses.append(torch.mean(torch.abs(predicted.float() - gather(targets, target_idx))))
        return sum(losses) / len(losses)

    def step(self, video, masks) -> float:
        """One update on device tensors from `to_device`; returns the loss (waits for the device)."""
        torch = self.torch
        loss = self.loss(video, masks)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            target, online = list(self.target.parameters()), list(self.encoder.parameters())
            torch._foreach_mul_(target, self.ema)  # pylint: disable=protected-access
            torch._foreach_add_(target, online, alpha=1.0 - self.ema)  # pylint: disable=protected-access
        return loss.item()


def peak_resident_bytes(hf_config: dict, options: dict, host_batch: dict, steps: int, queue) -> None:
    """Child-process target: `steps` steps of a randomly initialised TorchStep(hf_config, **options) on the host
    batch, then this process's peak resident bytes into `queue`."""
    reference = TorchStep(hf_config, **options)
    batch = reference.to_device(host_batch["video"], host_batch["masks"])
    for _ in range(steps):
        reference.step(*batch)
    queue.put(memory.resident_high_water_bytes())


def gather(tokens, indices):
    """tokens [B, N, D] at indices [B, K] -> [B, K, D]."""
    return tokens.gather(1, indices[..., None].expand(-1, -1, tokens.shape[-1]))
