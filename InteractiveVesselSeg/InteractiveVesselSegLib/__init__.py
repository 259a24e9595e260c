"""The Slicer module's working parts: MRML <-> engine bridges, the inference worker, the
segment writer and the prompt recorder. Nothing here touches Qt widgets."""
