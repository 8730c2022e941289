"""Images: the Graph (images, layers, tags over one graphdriver), GraphDB, layer streams,
archive load and save, how images are shown, and the image jobs."""
