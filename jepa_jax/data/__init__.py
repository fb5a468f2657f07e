"""Input pipelines (grain): sources, transforms, per-host batching."""
