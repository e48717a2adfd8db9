"""Integrations with training libraries. Each one imports its library lazily.

``poptrain.integrations.torch`` holds :class:`~poptrain.integrations.torch.TorchTrainable`;
importing :mod:`poptrain` (or this package) never imports PyTorch.
"""

from __future__ import annotations

__all__: list[str] = []
