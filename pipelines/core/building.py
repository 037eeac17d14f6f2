"""One lock around every model load and every model built in a request, process-wide.

transformers' and diffusers' loaders patch process-wide state while they build a model: `PreTrainedModel.tie_weights`
and `torch.nn.init` become no-ops, `nn.Module.register_parameter` puts new weights on the meta device, the default
dtype changes. Two loads at once can restore each other's patch and leave it in place (the built-in text model then
loaded without its tied output head and was switched off), and a network built meanwhile in another thread (a
Training-tab run) gets meta or uninitialised weights. Loading is CPU-bound anyway, so loads take turns.
"""

from __future__ import annotations

import threading

MODEL_BUILDING = threading.RLock()  # re-entrant: a load may load another model it is built from
