"""ActionFormer (Zhang, Wu, Li, ECCV 2022): local-window transformer pyramid, anchor-free heads, whole videos.

``model.py`` (config with the official option names, the network, ``forward_heads``; the numbered deviation
list), ``official.py`` (the authors' checkpoints).
"""
