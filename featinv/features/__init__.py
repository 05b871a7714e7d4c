"""Built-in representations. Each module here is an ordinary featinv plugin.

They are registered through the same ``featinv_register_features`` hook as third-party plugins;
this list is the only place that names them.
"""

BUILTIN_PLUGINS = (
    "featinv.features.hog",
    "featinv.features.lbp",
    "featinv.features.sift",
    "featinv.features.alexnet",
    "featinv.features.squeezenet",
    "featinv.features.timm_stages",
)
