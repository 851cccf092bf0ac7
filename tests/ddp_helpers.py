"""Callbacks used by the DDP tests (imported by the spawned `bilatcf` processes through PYTHONPATH)."""

import pytorch_lightning as pl
from torch.nn.modules.batchnorm import _BatchNorm


class FreezeBatchNorm(pl.Callback):
    """Batch-norm layers in eval mode, so a forward does not depend on how the global batch is split across processes.

    On CPU there is no SyncBatchNorm (PyTorch supports it on GPUs only), so this is what makes a 2-process run and a
    1-process run on the same global batch comparable to float precision.
    """

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        for module in pl_module.modules():
            if isinstance(module, _BatchNorm):
                module.eval()
