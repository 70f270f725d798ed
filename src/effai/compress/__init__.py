"""Deep Compression (Han et al. 2016): pruning, k-means weight sharing and Huffman coding,
with a real compressed file and a loader that restores the weights bit for bit.

>>> import os, tempfile, torch
>>> from torch import nn
>>> net = nn.Linear(16, 4)
>>> p = os.path.join(tempfile.mkdtemp(), "m.effdc")
>>> _ = save_compressed(net, p)
>>> torch.equal(load_compressed(p, model=nn.Linear(16, 4)).weight, net.weight)
True
"""

from effai.compress.format import load_compressed, save_compressed
from effai.compress.pipeline import CompressionReport, DeepCompressionConfig, deep_compression

__all__ = ["CompressionReport", "DeepCompressionConfig", "deep_compression", "load_compressed", "save_compressed"]
