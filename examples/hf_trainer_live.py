"""A Hugging Face Trainer run with its model drawn live: the callback is the one line glnet adds."""
# ruff: noqa: I001  (glnet first: it makes torchvision importable before lightning/transformers import it)

import os

from glnet.integrations.transformers import LiveCallback  # first: it fixes torchvision's import

import torch
from transformers import Trainer, TrainingArguments, ViTConfig, ViTForImageClassification

config = ViTConfig(image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                   intermediate_size=128, num_labels=10)  # fmt: skip
model = ViTForImageClassification(config)  # or .from_pretrained(your folder)
x, y = torch.randn(256, 3, 32, 32), torch.randint(0, 10, (256,))  # your data here
data = [{"pixel_values": a, "labels": b} for a, b in zip(x, y, strict=True)]

args = TrainingArguments("hf-out", max_steps=int(os.environ.get("GLNET_EXAMPLE_STEPS", 200)), logging_steps=1,
                         per_device_train_batch_size=32, report_to=[], save_strategy="no")  # fmt: skip
live = LiveCallback(probe=x[0], target=y[0], record=os.environ.get("GLNET_EXAMPLE_RECORD"))
Trainer(model=model, args=args, train_dataset=data, callbacks=[live]).train()
