"""A Lightning fit with its model drawn live: the callback is the one line glnet adds."""
# ruff: noqa: I001  (glnet first: it makes torchvision importable before lightning/transformers import it)

import os

from glnet.integrations.lightning import LiveCallback  # before lightning: it fixes torchvision's import

import lightning as L
import torch
import torch.nn.functional as F
import torchvision

x, y = torch.randn(256, 3, 64, 64), torch.randint(0, 10, (256,))  # your data here


class Classifier(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torchvision.models.resnet18(num_classes=10)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, _):
        x, y = batch
        out = self(x)
        self.log("train_acc", (out.argmax(1) == y).float().mean())
        return F.cross_entropy(out, y)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3)


live = LiveCallback(probe=x[0], target=y[0], record=os.environ.get("GLNET_EXAMPLE_RECORD"))
trainer = L.Trainer(max_steps=int(os.environ.get("GLNET_EXAMPLE_STEPS", 200)), callbacks=[live], logger=False)
trainer.fit(
    Classifier(), torch.utils.data.DataLoader(list(zip(x, y, strict=True)), batch_size=32, shuffle=True)
)
