"""The MedRegion corpus: its schema (the contract), the synthetic generator, importers and the build."""
