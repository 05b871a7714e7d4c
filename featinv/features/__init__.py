"""Built-in representations, each module an ordinary featinv plugin (named in
``featinv.representation.plugins.BUILTIN_PLUGINS``), plus the VLFeat backend and drawing helpers."""
