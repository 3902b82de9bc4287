"""Wire formats Modelport serves and speaks. Pure functions over bytes and dicts: no I/O."""
