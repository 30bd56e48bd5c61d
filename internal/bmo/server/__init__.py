"""The HTTP edge (layer 6): the only package that imports aiohttp.web."""
