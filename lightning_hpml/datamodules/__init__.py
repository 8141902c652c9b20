"""LightningDataModules reading each dataset's real on-disk format, the format readers/writers, and the synthetic
generators that write small datasets in those formats."""
