"""`llmr` with dropout switched off, so a DDP run and a one-process run can be compared step for step.

Dropout draws different masks on each process: everything else (batches, gathered negatives, gradient
averaging) must make the 2-process run equal the 1-process run with the same global batch.
"""

import sys

import sentence_transformers
import torch
from sentence_transformers.cross_encoder import CrossEncoder

from llmr.cli import app


def _no_dropout(cls):
    init = cls.__init__

    def patched(self, *args, **kwargs):
        init(self, *args, **kwargs)
        for module in self.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0

    cls.__init__ = patched


_no_dropout(sentence_transformers.SentenceTransformer)
_no_dropout(CrossEncoder)

if __name__ == "__main__":
    sys.argv[0] = "llmr"
    app()
