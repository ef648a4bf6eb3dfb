"""Exemplar-based translation (HIDA Table 4, MetFaces): CoCosNet and CoCosNet with HIDA's modules."""
